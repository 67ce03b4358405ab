"""The rendered command: what the supervisor runs. Built by `render.py`, read by
`launch/process.py`.

A value type of the bottom layer (the import contract in .importlinter): the renderer above it
builds one, the supervisor side depends on it alone and never on the profile, the loader or YAML.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # variables the launcher copies from its own environment: target name -> source name
    env_from: dict[str, str] = field(default_factory=dict)

    def shell_line(self) -> str:
        """One line, safe to paste into a POSIX shell."""
        assigns = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        # Source names are validated identifiers, so "$NAME" is safe unquoted-content here.
        assigns += [f'{k}="${src}"' for k, src in sorted(self.env_from.items())]
        prefix = ("env " + " ".join(assigns) + " ") if assigns else ""
        return prefix + shlex.join(self.argv)

    def as_json(self) -> dict[str, Any]:
        return {"argv": self.argv, "env": self.env, "env_from": self.env_from}

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The server's environment: the launcher's, the profile's `env`, the copied variables."""
        env = dict(environ)
        env.update(self.env)
        for target, source in self.env_from.items():
            if source in environ:
                env[target] = environ[source]
        # vLLM buffers its logs when stdout is a pipe; phases and failures must arrive as they
        # happen.
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env
