"""The typed profile: what a user may write, with ranges and closed sets. No I/O here.

Engine and server keys are top-level and named as vLLM's flags in snake_case, so a user who knows
`--max-num-seqs` knows `max_num_seqs`. A key left unset (None) is not rendered: vLLM's own default
applies, and `serve render --explain` says so. Every default lives in this file, once.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
# The quantization methods that exist in every vLLM we support (0.26 to 0.33); preflight refines
# this against the vLLM that will actually run.
Quantization = Literal[
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "fp8",
    "compressed-tensors",
    "modelopt",
    "modelopt_fp4",
    "mxfp4",
    "experts_int8",
    "moe_wna16",
    "quark",
    "torchao",
]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
LoadFormat = Literal[
    "auto",
    "pt",
    "safetensors",
    "npcache",
    "dummy",
    "gguf",
    "sharded_state",
    "tensorizer",
    "mistral",
]
Restart = Literal["never", "on-failure", "always"]
ServerKind = Literal["openai", "custom"]

BUILTIN_MODEL_PREFIX = "builtin:"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    # strict: "16" is not an int, 1 is not a bool. forbid: a typo is an error, never ignored
    # (vLLM's own --config drops unknown keys and `false` booleans silently: vllm 51401, 43252).
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class Sampling(Strict):
    """Default sampling parameters; a request's own values win. Rendered as vLLM's
    --override-generation-config."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="-1 or 0 disables top-k")
    max_tokens: int | None = Field(None, ge=1, description="default max_tokens of a request")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)


class Profile(Strict):
    """A serve profile. See README.md, 'Profiles'."""

    description: str = Field("", description="one line shown by `serve profiles`")
    extends: str | None = Field(
        None,
        description="a built-in profile name or a path (relative to this file) to inherit from",
    )

    # --- engine (vLLM flags) ---
    model: str = Field(
        ..., min_length=1, description="Hugging Face id, local directory, or builtin:tiny-phi3"
    )
    served_model_name: str | None = Field(
        None, min_length=1, description="the id clients use; default: the model"
    )
    tokenizer: str | None = None
    revision: str | None = None
    trust_remote_code: bool | None = None
    dtype: Dtype | None = None
    quantization: Quantization | None = None
    load_format: LoadFormat | None = None
    max_model_len: int | None = Field(None, ge=16, le=10_485_760)
    max_num_seqs: int | None = Field(None, ge=1, le=65_536)
    max_num_batched_tokens: int | None = Field(None, ge=16)
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    kv_cache_dtype: KvCacheDtype | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = Field(None, description="false = capture CUDA graphs")
    tensor_parallel_size: int | None = Field(None, ge=1, le=64)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=64)
    seed: int | None = Field(None, ge=0)
    speculative_config: dict[str, Any] | None = Field(
        None,
        description="vLLM's --speculative-config, e.g. {method: ngram, num_speculative_tokens: 4}",
    )
    shutdown_timeout: int | None = Field(
        None, ge=0, le=3600, description="seconds vLLM drains in-flight requests on SIGTERM"
    )
    chat_template: str | None = None
    download_dir: str | None = None

    sampling: Sampling = Field(default_factory=Sampling)

    # --- server ---
    server: ServerKind = Field("openai", description="openai: vLLM's server; custom: ours (SSE)")
    host: str = Field("127.0.0.1", min_length=1)
    port: int | None = Field(
        None, ge=1, le=65_535, description="default 8000 (openai) / 7860 (custom)"
    )
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key)"
    )
    python: str | None = Field(
        None, description="interpreter that has vLLM; default: the one running serve"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment for the server process"
    )
    extra_args: list[str] = Field(
        default_factory=list, description="appended verbatim to the vLLM command (escape hatch)"
    )

    # --- supervision ---
    restart: Restart = "never"

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("must be an environment variable name like VLLM_API_KEY")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @field_validator("extra_args")
    @classmethod
    def _no_secrets_in_argv(cls, v: list[str]) -> list[str]:
        if any(a == "--api-key" or a.startswith("--api-key=") for a in v):
            raise ValueError(
                "do not put the API key in extra_args (it would show in `ps`); use api_key_env"
            )
        return v

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (7860 if self.server == "custom" else 8000)

    @property
    def model_id(self) -> str:
        """The id /v1/models lists for this profile (a built-in model is listed by its name)."""
        if self.served_model_name:
            return self.served_model_name
        return self.model.removeprefix(BUILTIN_MODEL_PREFIX)
