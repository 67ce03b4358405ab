"""A fleet file: several models behind one OpenAI endpoint. Pure: text in, validated members out.

    port: 8000
    host: 127.0.0.1
    api_key_env: FLEET_KEY      # optional: the fleet's own key, for everything but /health
    models:                     # the public model name -> its profile
      chat: {profile: h100}
      small: {profile: ./small.yaml, set: {max_num_seqs: 32}, preload: false, ttl: 600}
      coder: {profile: ./coder.yaml, pin: true}   # never swapped out
    max_resident: 2             # optional: models loaded at once (swap beyond it)

Each model is a normal profile, resolved with the loader (its layers, its strictness, its one-line
errors, which name the model here) plus what the fleet decides for it: its served name (the public
one), loopback as its host (an engine is never reachable from outside, nor its admin routes), and
a port of its own. A profile path is relative to the fleet file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ProfileError
from ..loader import Resolved, load
from ..profile_files import find_profile, parse_yaml, read_profile
from ..profile_values import ServedName

ENGINE_HOST = "127.0.0.1"
DRAIN_S = 30.0  # how long requests in flight may finish after SIGTERM (deploy budgets read it)
MAX_MODELS = 16


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Scalar = str | int | float | bool


class FleetModel(Strict):
    profile: Annotated[str, Field(min_length=1, description="built-in name or path")]
    set: dict[str, Scalar] = Field(default_factory=dict, description="profile keys to override")
    preload: bool = Field(True, description="start with the fleet (false: at its first request)")
    ttl: Annotated[float, Field(gt=0)] | None = Field(
        None, description="seconds without a request after which it is put to sleep or stopped"
    )
    pin: bool = Field(False, description="keep it loaded: never swapped out, no ttl")
    sleep: bool | None = Field(
        None,
        description="swap it out with vLLM's sleep mode (level 1: weights to host memory); "
        "default: on a host with NVIDIA GPUs, off on CPU (stop and start)",
    )


class FleetFile(Strict):
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    host: str = "127.0.0.1"
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    queue_timeout: Annotated[float, Field(gt=0)] = Field(
        300.0, description="how long a request waits for its model to start"
    )
    max_resident: Annotated[int, Field(ge=1)] | None = Field(
        None, description="models loaded at once, beyond what fits the GPUs (default: no limit)"
    )
    min_residency: Annotated[float, Field(ge=0)] = Field(
        30.0, description="seconds a model stays loaded before it may be swapped out"
    )
    swap_timeout: Annotated[float, Field(gt=0)] = Field(
        60.0, description="how long a swap waits for the requests in flight on the model it evicts"
    )
    models: Annotated[dict[ServedName, FleetModel], Field(min_length=1, max_length=MAX_MODELS)]


@dataclass(frozen=True)
class Member:
    name: str  # the public model name, the engine's served name
    port: int  # the engine's loopback port
    profile_ref: str  # what `serve launch --profile` gets
    sets: tuple[str, ...]  # and its --set arguments
    resolved: Resolved
    preload: bool = True
    ttl: float | None = None
    pin: bool = False
    sleep: bool | None = None  # None: decided by the host (placement.sleeps)


@dataclass(frozen=True)
class Fleet:
    source: str
    port: int
    host: str
    api_key_env: str | None
    members: tuple[Member, ...]
    queue_timeout: float = 300.0
    max_resident: int | None = None
    min_residency: float = 30.0
    swap_timeout: float = 60.0


def _line_of(lines: dict[str, int], loc: tuple[Any, ...]) -> int | None:
    for i in range(len(loc), 0, -1):
        if (line := lines.get(".".join(str(p) for p in loc[:i]))) is not None:
            return line
    return None


def parse(text: str, source: str) -> FleetFile:
    data, lines = parse_yaml(text, source)
    try:
        return FleetFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top)"
        line = _line_of(lines, loc)
        where = f"{source}:{line}" if line else source
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = FleetModel.model_fields if len(loc) > 2 else FleetFile.model_fields
            msg = f"unknown key; allowed: {', '.join(allowed)}"
        raise ProfileError(f"{where}: {key}: {msg}") from None


def resolve(fleet: FleetFile, source: str, base: Path, ports: list[int]) -> Fleet:
    """Each model's profile resolved as `serve launch` will (ProfileError names the model)."""
    members = []
    for (name, model), port in zip(fleet.models.items(), ports, strict=True):
        ref = model.profile
        if "/" in ref or ref.endswith((".yaml", ".yml")):
            try:
                ref = str(find_profile(ref, relative_to=base).resolve())
            except ProfileError as e:
                raise ProfileError(f"{source}: models.{name}.profile: {e.message}") from None
        sets = [f"{k}={_text(v)}" for k, v in model.set.items()]
        sets += [f"served_model_name={name}", f"host={ENGINE_HOST}", f"port={port}"]
        try:
            resolved = load(ref, sets=sets)
        except ProfileError as e:
            raise ProfileError(f"{source}: models.{name}: {e.message}") from None
        members.append(Member(name, port, ref, tuple(sets), resolved, model.preload, model.ttl,
                              model.pin, model.sleep))  # fmt: skip
    pinned = [m for m in members if m.pin]
    if fleet.max_resident is not None and len(pinned) > fleet.max_resident:
        raise ProfileError(
            f"{source}: max_resident: {fleet.max_resident} is fewer than the pinned models "
            f"({', '.join(m.name for m in pinned)}); fix: pin fewer or raise max_resident"
        )
    return Fleet(source, fleet.port, fleet.host, fleet.api_key_env, tuple(members),
                 fleet.queue_timeout, fleet.max_resident, fleet.min_residency,
                 fleet.swap_timeout)  # fmt: skip


def _text(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def free_ports(n: int) -> list[int]:
    """`n` loopback ports free now (the engines bind them a moment later)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind((ENGINE_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def load_fleet(path: Path) -> Fleet:
    """The fleet file at `path`, every model resolved, each given a free loopback port."""
    source = str(path)
    fleet = parse(read_profile(path, source), source)
    return resolve(fleet, source, path.resolve().parent, free_ports(len(fleet.models)))
