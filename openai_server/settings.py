"""serve's own settings, from the environment: every variable serve reads for itself, in one place.

These configure serve, not the server: where caches live, which profile and endpoint to use by
default. The README's "Environment" table lists them. Profile keys set from the environment
(`SERVE_<KEY>`, e.g. `SERVE_MAX_NUM_SEQS`) are not here: they are a layer of the profile, read by
`profile_files.env_layer` with the profile's strictness (loader.py's docstring says why that layer
is not a pydantic-settings source). The SERVE_* names below are reserved there
(`profile_files.NON_PROFILE_ENV`, checked against this class by a test): `SERVE_CACHE_DIR` is a
setting, never a profile key.

pydantic-settings costs about 0.1 s to import: import this module inside the functions that need
it, so the fast commands that do not (`render` of a hub model, `validate`, `schema`) stay fast.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # case_sensitive: `model` must not pick up a variable `Model`; empty values count as unset,
    # as shells and Compose files produce `VAR=` for "no value".
    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    cache_dir: Path | None = Field(
        None,
        validation_alias="SERVE_CACHE_DIR",
        description="serve's cache (generated models, learned vLLM flags); "
        "default $XDG_CACHE_HOME/serve or ~/.cache/serve",
    )
    flags_cache: Path | None = Field(
        None,
        validation_alias="SERVE_FLAGS_CACHE",
        description="where the flags learned from an installed vLLM are cached; "
        "default <cache>/vllm-flags",
    )
    profile: str | None = Field(
        None,
        validation_alias="SERVE_PROFILE",
        description="the profile of commands run without --profile (built-in name or path)",
    )
    xdg_cache_home: Path | None = Field(
        None, validation_alias="XDG_CACHE_HOME", description="the XDG cache base directory"
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias="OPENAI_BASE_URL",
        description="smoke, chat, bench: the endpoint, as the OpenAI SDK reads it "
        "(default http://127.0.0.1:8000)",
    )
    model: str | None = Field(
        None,
        validation_alias="MODEL",
        description="smoke, chat, bench: the model id (default: the only one the server lists)",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias="OPENAI_API_KEY",
        description="smoke, chat, bench: the API key when --api-key-env is not given",
    )

    @property
    def cache_root(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        return (self.xdg_cache_home or Path.home() / ".cache") / "serve"

    @property
    def flags_cache_dir(self) -> Path:
        return self.flags_cache or self.cache_root / "vllm-flags"


def settings() -> Settings:
    """The settings as the environment says now (read afresh: tests and callers change it)."""
    return Settings()


def variables() -> dict[str, str]:
    """Environment variable -> what it sets (the README table; the loader's reserved names)."""
    return {str(f.validation_alias): f.description or "" for f in Settings.model_fields.values()}
