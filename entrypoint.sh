#!/bin/sh
# Container entrypoint: the launcher becomes the main process (exec), so `docker stop` /
# Kubernetes' SIGTERM reach it directly and it stops the whole vLLM process group in order.
# Arguments are passed through quoted ("$@"): e.g. `docker run IMAGE --set max_num_seqs=32`.
set -eu
: "${PROFILE:=tiny-cpu}"
exec serve launch --profile "$PROFILE" "$@"
