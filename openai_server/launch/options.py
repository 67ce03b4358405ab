"""What one launch needs to know, decided once before anything starts.

`launch/entry.py` builds them from the profile (the URL the launcher probes, the model id that
makes it ready, the API key, the stop grace period); the supervisor receives the finished options
and never sees the profile: nothing here imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .restart import RestartPolicy

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
    api_key_env: str | None = None  # its variable's name, for the ready file (never the key)
    custom_server: bool = False
    timing: Timing = field(default_factory=Timing)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready_file: Path | None = None
    # the profile's keys, so that a failure names the key to change (launch/diagnose.py)
    profile_keys: frozenset[str] = frozenset()


def stop_grace(grace: float, shutdown_timeout: float | None) -> float:
    """SIGTERM -> SIGKILL wait: never shorter than vLLM's own drain (see DRAIN_MARGIN)."""
    if shutdown_timeout is None:
        return grace
    return max(grace, shutdown_timeout + DRAIN_MARGIN)
