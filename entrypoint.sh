#!/bin/sh
# Container entrypoint: the launcher becomes the main process (exec), so `docker stop` /
# Kubernetes' SIGTERM reach it directly and it stops the whole vLLM process group in order.
# Arguments are passed through quoted ("$@"): e.g. `docker run IMAGE --set max_num_seqs=32`.
set -eu
# Platforms that mount no files (Hugging Face Inference Endpoints, SkyServe) pass the profile's
# text in PROFILE_YAML (rendered by `serve deploy`); it is written to a file that only we can read.
if [ -n "${PROFILE_YAML:-}" ]; then
    dir=$(mktemp -d)
    printf '%s\n' "$PROFILE_YAML" > "$dir/profile.yaml"
    PROFILE="$dir/profile.yaml"
fi
: "${PROFILE:=tiny-cpu}"
exec serve launch --profile "$PROFILE" "$@"
