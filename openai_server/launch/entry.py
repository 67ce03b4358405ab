"""Where a launch meets its profile: the profile read once into the options the supervisor takes.

The supervisor side (supervisor.py, process.py, guardian.py) never imports the profile, the
loader or the renderer (the import contract in .importlinter); this module is the one place on the
launch side that does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ..errors import ProfileError
from ..profile import Profile
from ..render import model_path
from .options import LaunchOptions, Timing, stop_grace
from .restart import RESTART_LIMIT, RestartPolicy


def options_for(
    profile: Profile,
    environ: Mapping[str, str],
    *,
    timing: Timing | None = None,
    restart_limit: int = RESTART_LIMIT,
    ready_file: Path | None = None,
) -> LaunchOptions:
    """The options for launching `profile`; ProfileError when its API key variable is unset."""
    # here, not at the top: readiness imports httpx, which `serve render` does not need
    from .readiness import base_url_for

    timing = timing or Timing()
    api_key = None
    if profile.api_key_env:
        api_key = environ.get(profile.api_key_env)
        if not api_key:
            raise ProfileError(
                f"api_key_env: the environment variable {profile.api_key_env} is not set or empty"
            )
    return LaunchOptions(
        base_url=base_url_for(profile.host, profile.effective_port),
        model_id=profile.model_id,
        model=model_path(profile),
        api_key=api_key,
        api_key_env=profile.api_key_env,
        custom_server=profile.server == "custom",
        timing=replace(timing, grace=stop_grace(timing.grace, profile.shutdown_timeout)),
        restart=RestartPolicy(mode=profile.restart, limit=restart_limit),
        ready_file=ready_file,
        profile_keys=frozenset(Profile.model_fields),
    )
