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
# A cache bundle (`serve cache pack`; a file or an http(s) URL, set by `serve deploy
# --cache-bundle`) is restored before the launch, so the start loads what another host compiled.
# --best-effort: a bundle this host cannot use is one line, and the start compiles as without it.
if [ -n "${SERVE_CACHE_BUNDLE:-}" ]; then
    serve cache unpack "$SERVE_CACHE_BUNDLE" --best-effort \
        || echo "serve: cache bundle not restored (exit $?); the start compiles what it needs"
fi
exec serve launch --profile "$PROFILE" --ready-file "${TMPDIR:-/tmp}/serve-ready" "$@"
