"""What one launch needs to know, decided once before anything starts.

`LaunchOptions.for_profile` holds the launch policy that is not a command-line value: the URL the
launcher probes, the model id that makes it ready, the API key, and the stop grace period. The
supervisor receives the finished options and never sees the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ProfileError
from .restart import RestartPolicy

if TYPE_CHECKING:
    from ..profile import Profile

# vLLM drains in-flight requests for --shutdown-timeout seconds on SIGTERM; a SIGKILL in the middle
# of that drops them, so the grace period is at least that plus this margin for the engine's exit.
DRAIN_MARGIN = 10.0


@dataclass(frozen=True)
class Timing:
    """The launcher's own timing knobs (command-line options of `serve launch`)."""

    ready_timeout: float = 1800.0
    stall_timeout: float = 300.0  # 0: off
    grace: float = 30.0
    health_interval: float = 5.0
    deep_probe_interval: float = 0.0  # 0: off
    deep_probe_timeout: float = 30.0


@dataclass(frozen=True)
class LaunchOptions:
    base_url: str
    model_id: str
    model: str | None = None  # the --model argument (path or hub id), for failure messages
    api_key: str | None = None
    custom_server: bool = False
    timing: Timing = field(default_factory=Timing)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready_file: Path | None = None

    @classmethod
    def for_profile(
        cls,
        profile: Profile,
        environ: Mapping[str, str],
        *,
        timing: Timing | None = None,
        restart_limit: int = 5,
        ready_file: Path | None = None,
    ) -> LaunchOptions:
        """The options for launching `profile`; ProfileError when its API key variable is unset."""
        # here, not at the top: readiness imports httpx, and the fast commands (deploy's
        # budgets) import this module for Timing
        from ..render import model_path
        from .readiness import base_url_for

        timing = timing or Timing()
        api_key = None
        if profile.api_key_env:
            api_key = environ.get(profile.api_key_env)
            if not api_key:
                raise ProfileError(
                    f"api_key_env: the environment variable {profile.api_key_env} is not set "
                    "or empty"
                )
        return cls(
            base_url=base_url_for(profile.host, profile.effective_port),
            model_id=profile.model_id,
            model=model_path(profile),
            api_key=api_key,
            custom_server=profile.server == "custom",
            timing=replace(timing, grace=stop_grace(timing.grace, profile.shutdown_timeout)),
            restart=RestartPolicy(mode=profile.restart, limit=restart_limit),
            ready_file=ready_file,
        )


def stop_grace(grace: float, shutdown_timeout: float | None) -> float:
    """SIGTERM -> SIGKILL wait: never shorter than vLLM's own drain (see DRAIN_MARGIN)."""
    if shutdown_timeout is None:
        return grace
    return max(grace, shutdown_timeout + DRAIN_MARGIN)
