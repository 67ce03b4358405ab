# serve on the official vLLM OpenAI image. Pinned: 0.26.0 is the release the GPU hosts run and the
# oldest we support; any tag from v0.26.0 to v0.33.x works (serve check knows their flags).
FROM vllm/vllm-openai:v0.26.0

# tini reaps zombies and forwards signals when serve runs as PID 1 (vLLM's engine processes are
# reparented to PID 1 if the API server dies first).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/serve
COPY pyproject.toml README.md ./
COPY openai_server ./openai_server
COPY profiles ./profiles
# vLLM (and torch) come with the base image: install serve without touching them.
RUN pip install --no-cache-dir . \
    && serve profiles
COPY entrypoint.sh /usr/local/bin/entrypoint.sh

# In a container the server must listen on all interfaces (the profile default is loopback).
ENV PROFILE=phi3-t4 \
    SERVE_HOST=0.0.0.0 \
    HF_HOME=/root/.cache/huggingface
# Keep vLLM's torch.compile and kernel caches on a volume: warm starts were 3.3x faster
# (docs/vllm-facts.md). Triton's, Inductor's, CUDA's and FlashInfer's caches default to ~/.triton,
# /tmp, ~/.nv and ~/.cache: all go under /root/.cache/kernels, one folder a deployment mounts
# (serve deploy) and `serve cache pack|unpack` finds by these same variables.
ENV TRITON_CACHE_DIR=/root/.cache/kernels/triton \
    TORCHINDUCTOR_CACHE_DIR=/root/.cache/kernels/torchinductor \
    CUDA_CACHE_PATH=/root/.cache/kernels/nv \
    FLASHINFER_WORKSPACE_BASE=/root/.cache/kernels
VOLUME ["/root/.cache"]
EXPOSE 8000 7860

# Healthy = the launcher is ready and /v1/models lists its model at its port. The image does not
# know the profile (PROFILE, PROFILE_YAML or `docker run IMAGE --set port=...` decide it): the
# launcher writes what it serves to its ready file (entrypoint.sh), which `serve probe` reads on
# its fast path (the standard library only; a start takes minutes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=1800s --retries=3 \
    CMD ["sh", "-c", "exec serve probe --ready-file \"${TMPDIR:-/tmp}/serve-ready\""]

ENTRYPOINT ["tini", "--", "/usr/local/bin/entrypoint.sh"]
