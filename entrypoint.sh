#!/bin/sh
# Container entrypoint: the launcher becomes the main process (exec), so `docker stop` /
# Kubernetes' SIGTERM reach it directly and it stops the whole vLLM process group in order.
# Arguments are passed through quoted ("$@"): e.g. `docker run IMAGE --set max_num_seqs=32`.
set -eu
# Platforms that mount no files (Hugging Face Inference Endpoints, SkyServe) pass the profile's
# text in PROFILE_YAML (rendered by `serve deploy`). It is written to a fixed path.
# The launcher writes what it serves (URL, model, key variable) to its ready file once ready and
# removes it when not: the image's HEALTHCHECK probes that (`serve probe --ready-file`).
if [ -n "${PROFILE_YAML:-}" ]; then
    PROFILE="${TMPDIR:-/tmp}/serve-profile.yaml"
    printf '%s\n' "$PROFILE_YAML" > "$PROFILE"
fi
: "${PROFILE:=tiny-cpu}"
exec serve launch --profile "$PROFILE" --ready-file "${TMPDIR:-/tmp}/serve-ready" "$@"
