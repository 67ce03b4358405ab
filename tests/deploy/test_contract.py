"""The container contract of `serve deploy`, kept without a container runtime.

There is no Docker engine, Kubernetes cluster, Hugging Face or SkyPilot account where this project
is tested, so what the platform would do with the rendered files is done here by hand, and every
input is read back from the rendered files (and the Dockerfile of the image they name), never from
serve's Python constants: the image's entrypoint runs as a plain process with the rendered
environment; the rendered health check is run until it passes; SIGTERM goes to the entrypoint's
process (PID 1 in the container) and it must exit with the documented clean-stop code within the
grace period, leaving no process and no listener behind. The launcher must also have read the
profile the files carry (not another one the image names) and serve its model on the rendered port.

What a platform would have provided, and what stands in for it here (see `on_this_host`):
- the container's filesystem -> one directory of the module (`rootfs`), in-container path P at
  rootfs/P, emptied at each case's start as a new container's is; the same host path in every case,
  because vLLM's compile-cache key holds the model's path (serve generates the built-in model in
  its cache, under HOME or XDG_CACHE_HOME), so only equal paths can find a warm cache;
- the files mounted or copied into the container (the profile) -> the same text at rootfs/P;
- the volumes -> empty directories at rootfs/P, except the one vLLM's compile cache is on, which is
  the module's shared cache (see `vllm_cache`);
- the image's root home (/root) -> rootfs/root;
- tini (PID 1) -> nothing: entrypoint.sh execs serve, so the SIGTERM reaches serve either way;
- the user the container runs as (root; UID 1000 in a Space) -> whoever runs the tests: what a
  non-root user could not write (/root) is asserted to stay empty instead.

A new target is one extractor: rendered files -> `Contract`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import psutil
import pytest
import yaml

from openai_server import loader
from openai_server.deploy import compose, hf_endpoint, hf_space, k8s, skyserve
from openai_server.deploy.accelerators import Choice
from openai_server.errors import ExitCode
from openai_server.launch.options import Timing, stop_grace
from openai_server.profile import Profile
from tests.conftest import (
    ROOT,
    assert_nothing_left,
    free_port,
    requires_vllm,
    server_groups,
)

# This test's own cap on a start; the rendered start budgets (30 min) are for cold GPU hosts.
START_CAP_S = 600
POLL_S = 2.0
# The deployer's shell, which compose interpolates `${VAR}` from, and the secrets the kubelet reads:
# no HF_TOKEN (the tiny model needs no hub), so the optional forms must hold without it.
DEPLOYER_ENVIRON: dict[str, str] = {}
K8S_SECRETS: dict[str, dict[str, str]] = {"serve-secrets": {}}
# The Dockerfile copies the repository's entrypoint.sh here (COPY entrypoint.sh ...).
IMAGE_FILES = {"/usr/local/bin/entrypoint.sh": ROOT / "entrypoint.sh"}
# The image runs as root: HOME is /root unless an ENV sets another.
IMAGE_HOME = "/root"
# Mounts the host already has: the host's /dev/shm stands in for shm_size / a memory emptyDir.
HOST_PROVIDED = ("/dev/shm",)
# Docker's default PATH, after the venv whose `serve` the image would have installed.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where a Space mounts its persistent storage (Spaces docs, "Disk usage on Spaces"): a platform
# fact, not in the rendered files, which only suggest a storage tier in the README.
SPACE_STORAGE = "/data"
# A health check the files name but do not time (an endpoint's healthRoute): this test's timeout,
# the image's HEALTHCHECK one (5 s); /health answers in milliseconds once vLLM listens.
UNTIMED_PROBE_TIMEOUT_S = 5.0
# What stands in for hardware choice: the tiny profile runs on CPU (accelerators.choose's answer).
CPU = Choice(None, 0, "cpu")


@dataclass(frozen=True)
class HttpGet:
    """A platform's HTTP health check: GET `path` on the container's port must answer 200."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """What a platform takes from one target's rendered files, in the container's terms."""

    env: dict[str, str]  # the container's environment: the image's ENV, then the rendered one
    command: tuple[str, ...]  # what the container runs (the image's ENTRYPOINT unless overridden)
    probe: tuple[str, ...] | HttpGet  # the health check: run inside the container with `env`, or
    probe_timeout_s: float  # an HTTP GET of the container's port
    grace_s: float  # SIGTERM -> SIGKILL
    port: int  # the container port the rendered file publishes
    files: dict[str, str]  # in-container path -> text of a rendered file mounted or copied there
    volumes: tuple[str, ...]  # in-container paths of volumes (empty at a first start)
    profile_text: str  # the profile the files deliver (mounted, copied or in PROFILE_YAML)


def launcher_grace(profile_text: str) -> float:
    """For a platform whose SIGTERM -> SIGKILL wait is neither rendered nor settable in the files
    (a Space, an Inference Endpoint, a SkyServe replica): the launcher's own wait before it
    SIGKILLs vLLM (`serve launch --grace`'s default, at least vLLM's drain). A stop within it is
    one that never needed the launcher's SIGKILL; whether the platform waits that long is not
    something these files can promise (compose and k8s render it with a margin)."""
    profile = loader.load_text(profile_text, "profile.yaml").profile
    return stop_grace(Timing().grace, profile.shutdown_timeout)


# --- the image (the Dockerfile every target runs) ---------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined; comment lines dropped even inside one."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        instruction, _, args = (current + stripped).partition(" ")
        out.append((instruction.upper(), args.strip()))
        current = ""
    return out


def dockerfile_env(text: str) -> dict[str, str]:
    """The environment the Dockerfile's ENV lines set (`ENV K=V ...` and the legacy `ENV K V`)."""
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions(text):
        if instruction != "ENV":
            continue
        words = shlex.split(args)
        if "=" not in words[0]:
            env[words[0]] = args.split(None, 1)[1]
            continue
        for word in words:
            name, _, value = word.partition("=")
            env[name] = value
    return env


def image_entrypoint(text: str) -> tuple[str, ...]:
    (args,) = [a for i, a in dockerfile_instructions(text) if i == "ENTRYPOINT"]
    return tuple(json.loads(args))  # exec form, as hadolint requires


def dockerfile_healthcheck(text: str) -> tuple[tuple[str, ...], float]:
    """The HEALTHCHECK's command (exec or shell form) and its --timeout (Docker's default: 30s)."""
    (args,) = [a for i, a in dockerfile_instructions(text) if i == "HEALTHCHECK"]
    m = re.fullmatch(r"(?P<options>(?:--[a-z-]+=\S+\s+)*)CMD\s+(?P<command>.+)", args)
    assert m, f"HEALTHCHECK {args!r}"
    options = dict(o.removeprefix("--").split("=", 1) for o in m["options"].split())
    command = m["command"].strip()
    probe = tuple(json.loads(command)) if command.startswith("[") else ("/bin/sh", "-c", command)
    return probe, compose_duration(options.get("timeout", "30s"))


IMAGE = (ROOT / "Dockerfile").read_text()


# --- compose ------------------------------------------------------------------------------------


class ComposeRefused(Exception):
    """`docker compose` would refuse the file (a `${VAR:?message}` without a value)."""


_COMPOSE_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$`, `$V`, `${V}`, `${V-d}`, `${V:-d}`, `${V?m}`, `${V:?m}`,
    `${V+a}`, `${V:+a}`; the `:` forms treat an empty value as unset, as compose does."""

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["braced"] or m["named"], m["op"] or "", m["arg"] or ""
        current = environ.get(name)
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return arg if unset else str(current)
        if op.endswith("?"):
            if unset:
                raise ComposeRefused(f"required variable {name} is missing a value: {arg}")
            return str(current)
        if op.endswith("+"):
            return "" if unset else arg
        return current or ""  # compose warns and substitutes ""

    if "$" in _COMPOSE_VAR.sub("", value):
        raise ComposeRefused(f"invalid interpolation format in {value!r}")
    return _COMPOSE_VAR.sub(one, value)


def _interpolate_all(node: Any, environ: Mapping[str, str]) -> Any:
    # compose interpolates every string of the file before it reads any key
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_all(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_all(value, environ) for key, value in node.items()}
    return node


def compose_duration(text: str) -> float:
    """`40s`, `1m30s`, `500ms` (compose's Go durations)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose_contract(files: dict[str, str]) -> Contract:
    doc = _interpolate_all(yaml.safe_load(files["compose.yaml"]), DEPLOYER_ENVIRON)
    service = doc["services"]["serve"]
    assert not {"entrypoint", "command"} & service.keys(), "the service overrides the image"
    env = {**dockerfile_env(IMAGE)}
    for name, value in service["environment"].items():
        if value is not None:
            env[name] = str(value)
        elif name in DEPLOYER_ENVIRON:  # `NAME:` with no value passes the deployer's through
            env[name] = DEPLOYER_ENVIRON[name]
    mounted, volumes = {}, []
    for spec in service["volumes"]:
        source, target = spec.split(":")[:2]
        if source.startswith((".", "/")):  # a bind mount, relative to the compose file
            name = PurePosixPath(source).as_posix().removeprefix("./")
            assert name in files, f"{spec}: binds a host path that the deploy did not write"
            mounted[target] = files[name]
        else:
            assert source in doc["volumes"], f"{spec}: an undeclared named volume"
            volumes.append(target)
    check = service["healthcheck"]["test"]
    if isinstance(check, str):
        probe: tuple[str, ...] = ("/bin/sh", "-c", check)
    elif check[0] == "CMD-SHELL":
        probe = ("/bin/sh", "-c", check[1])
    else:
        assert check[0] == "CMD", f"healthcheck test {check!r}"
        probe = tuple(check[1:])
    (published,) = service["ports"]
    return Contract(
        env=env,
        command=image_entrypoint(IMAGE),
        probe=probe,
        probe_timeout_s=compose_duration(service["healthcheck"]["timeout"]),
        grace_s=compose_duration(service["stop_grace_period"]),
        port=int(str(published).rsplit(":", 1)[-1].split("/")[0]),
        files=mounted,
        volumes=tuple(volumes),
        profile_text=mounted[env["PROFILE"]],
    )


# --- Kubernetes ---------------------------------------------------------------------------------


class KubeletRefused(Exception):
    """The kubelet would not start the container (CreateContainerConfigError)."""


def kubelet_env(
    entries: list[dict[str, Any]], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A container's `env` as the kubelet resolves it: an optional secretKeyRef whose secret or
    key is missing leaves the variable out; a required one stops the container from starting."""
    env: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            assert "$(" not in entry["value"], f"{entry}: $(VAR) expansion is not modelled here"
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]  # other sources: model them before rendering them
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is not None:
            env[entry["name"]] = value
        elif not ref.get("optional", False):
            raise KubeletRefused(f"secret {ref['name']!r} has no key {ref['key']!r}")
    return env


def k8s_contract(files: dict[str, str]) -> Contract:
    docs = list(yaml.safe_load_all(files["serve.yaml"]))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not {"command", "args"} & container.keys(), "the container overrides the image"
    sources = {v["name"]: v for v in pod["volumes"]}
    mounted, volumes = {}, []
    for mount in container["volumeMounts"]:
        source, path = sources[mount["name"]], mount["mountPath"]
        if "configMap" in source:
            assert "subPath" not in mount and "items" not in source["configMap"]
            for key, text in config_maps[source["configMap"]["name"]]["data"].items():
                mounted[f"{path}/{key}"] = text
        else:
            assert {"persistentVolumeClaim", "emptyDir"} & source.keys(), source
            volumes.append(path)
    startup = container["startupProbe"]
    ports = [p["containerPort"] for p in container["ports"]]
    env = {**dockerfile_env(IMAGE), **kubelet_env(container.get("env", []), K8S_SECRETS)}
    return Contract(
        env=env,
        command=image_entrypoint(IMAGE),
        probe=tuple(startup["exec"]["command"]),
        probe_timeout_s=float(startup.get("timeoutSeconds", 1)),  # Kubernetes' default: 1 s
        grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
        port=ports[0],
        files=mounted,
        volumes=tuple(volumes),
        profile_text=mounted[env["PROFILE"]],
    )


# --- Hugging Face Space ---------------------------------------------------------------------------


def space_contract(files: dict[str, str]) -> Contract:
    """The Space builds its Dockerfile `FROM` serve's image (this repository's Dockerfile) and runs
    it: the image's ENV then the Space's; the image's ENTRYPOINT and HEALTHCHECK, which the Space
    keeps; its files are COPYs from the Space repository; `app_port` is the port it routes to."""
    _, front, _ = files["README.md"].split("---\n", 2)
    meta = yaml.safe_load(front)
    instructions = dockerfile_instructions(files["Dockerfile"])
    kinds = [i for i, _ in instructions]
    assert kinds.count("FROM") == 1, "one stage, on serve's image"
    assert not {"ENTRYPOINT", "CMD", "HEALTHCHECK"} & set(kinds), "the Space overrides the image"
    copied = {}
    for instruction, args in instructions:
        if instruction in ("COPY", "ADD"):
            *sources, target = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in sources:
                assert source in files, f"{instruction} {args}: not a file the deploy wrote"
                copied[target + source if target.endswith("/") else target] = files[source]
    (exposed,) = [a for i, a in instructions if i == "EXPOSE"]
    assert int(exposed) == meta["app_port"], "the image exposes another port than the Space's"
    env = {**dockerfile_env(IMAGE), **dockerfile_env(files["Dockerfile"])}
    probe, timeout = dockerfile_healthcheck(IMAGE)
    return Contract(
        env=env,
        command=image_entrypoint(IMAGE),
        probe=probe,
        probe_timeout_s=timeout,
        grace_s=launcher_grace(copied[env["PROFILE"]]),
        port=int(meta["app_port"]),
        files=copied,
        # persistent storage, which the README asks for (and suggests a tier of): without it
        # /data is the container's own disk, and a restart is cold
        volumes=(SPACE_STORAGE,) if meta.get("suggested_storage") else (),
        profile_text=copied[env["PROFILE"]],
    )


# --- Hugging Face Inference Endpoint and SkyServe: the profile in PROFILE_YAML -----------------


def endpoint_contract(files: dict[str, str]) -> Contract:
    """The endpoint runs `custom_image` (serve's image) with `env` over the image's ENV, mounts no
    file and no volume (the model repository at /repository is not what serves), and routes to
    `port`, which is healthy when `healthRoute` answers 200. Secrets (HF_TOKEN) are added by
    apply.py from the deployer's environment, which has none here."""
    args = json.loads(files["endpoint.json"])
    image = args["custom_image"]
    env = {**dockerfile_env(IMAGE), **args["env"]}
    # the image's own PROFILE is set as well: the run proves that PROFILE_YAML wins over it
    assert {"PROFILE", "PROFILE_YAML"} <= env.keys()
    return Contract(
        env=env,
        command=image_entrypoint(IMAGE),
        probe=HttpGet(image["healthRoute"]),
        probe_timeout_s=UNTIMED_PROBE_TIMEOUT_S,
        grace_s=launcher_grace(env["PROFILE_YAML"]),
        port=int(image["port"]),
        files={},
        volumes=(),
        profile_text=env["PROFILE_YAML"],
    )


def skyserve_contract(files: dict[str, str]) -> Contract:
    """A replica runs `run` in a container of `image_id` (whose ENV SkyPilot exports to its
    shells: skypilot #3321, #5451) with `envs` and the secrets (an optional one empty); ready when
    GET readiness_probe.path answers 200. `run` execs the entrypoint, so a signal to the job's
    process reaches serve as a runtime's to PID 1 does (how SkyServe stops a replica, a signal or
    its cluster torn down, is not in the file: the stop is checked as for the others)."""
    spec = yaml.safe_load(files["service.yaml"])
    assert spec["resources"]["image_id"].startswith("docker:"), "not serve's image"
    exec_, *command = shlex.split(spec["run"])
    assert exec_ == "exec", f"run: {spec['run']!r} does not exec the entrypoint"
    secrets = spec.get("secrets") or {}
    assert None not in secrets.values(), "a required secret: give it a value here first"
    probe = spec["service"]["readiness_probe"]
    assert "headers" not in probe, "secret substitution into probe headers is not modelled here"
    env = {**dockerfile_env(IMAGE), **spec["envs"], **secrets}
    return Contract(
        env=env,
        command=tuple(command),
        probe=HttpGet(probe["path"]),
        probe_timeout_s=float(probe["timeout_seconds"]),
        grace_s=launcher_grace(env["PROFILE_YAML"]),
        port=int(spec["resources"]["ports"]),
        files={},
        volumes=(),
        profile_text=env["PROFILE_YAML"],
    )


TARGETS: dict[
    str, tuple[Callable[[Profile], dict[str, str]], Callable[[dict[str, str]], Contract]]
] = {
    "compose": (compose.render, compose_contract),
    "k8s": (k8s.render, k8s_contract),
    "hf-space": (lambda p: hf_space.render(p, CPU), space_contract),
    "hf-endpoint": (lambda p: hf_endpoint.render(p, CPU, repository="me/any"), endpoint_contract),
    "skyserve": (lambda p: skyserve.render(p, CPU), skyserve_contract),
}


# --- the container, as a process on this host ---------------------------------------------------


@dataclass(frozen=True)
class HostRun:
    command: list[str]
    env: dict[str, str]
    probe: list[str] | HttpGet
    root: Path  # what stands in for the container's filesystem: in-container P is root/P
    vllm_cache: str  # the in-container directory vLLM's compile cache is in
    vllm_cache_shared: bool  # it is on a volume, which the module's shared cache stands in for

    def inside(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def vllm_cache_dir(env: Mapping[str, str], home: str) -> str:
    """Where vLLM puts its compile cache (vllm.envs: VLLM_CACHE_ROOT, else
    ${XDG_CACHE_HOME:-~/.cache}/vllm), in the container's terms."""
    cache_home = env.get("XDG_CACHE_HOME") or f"{home}/.cache"
    return env.get("VLLM_CACHE_ROOT") or f"{cache_home}/vllm"


def on_this_host(contract: Contract, rootfs: Path, vllm_cache: Path) -> HostRun:
    """The contract with every in-container path replaced by what stands in for it here.

    `rootfs` must be empty (a new container); `vllm_cache` is what stands in for a volume that
    vLLM's compile cache is on (see the `vllm_cache` fixture)."""
    home = contract.env.get("HOME", IMAGE_HOME)
    # in-container paths that exist only in the container: every value under one is mapped
    container_only = {IMAGE_HOME, home, *contract.files}
    for path, text in contract.files.items():
        # e.g. the rendered PROFILE /etc/serve/profile.yaml: the mounted text at rootfs/etc/...
        (rootfs / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / path.lstrip("/")).write_text(text)
    for path in contract.volumes:
        if path in HOST_PROVIDED:
            continue
        # a volume is reached through HOME or a variable; one reached by a path written
        # elsewhere (a profile's model: /models/x) would be missed by this stand-in
        reached = under(path, home) or any(under(v, path) for v in contract.env.values())
        assert reached, f"{path}: a volume this test has no stand-in for"
        (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)  # empty, as a new volume
        container_only.add(path)
    for path in {IMAGE_HOME, home}:
        (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)

    # vLLM's compile cache: on a volume, the module's shared one (a warm cache, as a restarted
    # container with its volume has); elsewhere, the container's own (cold at every start)
    cache = vllm_cache_dir(contract.env, home)
    shared = any(under(cache, v) for v in contract.volumes if v not in HOST_PROVIDED)
    if shared:
        link = rootfs / cache.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.rmdir()  # the volume's own (empty) directory, when the cache is the volume
        link.symlink_to(vllm_cache, target_is_directory=True)

    def host(value: str) -> str:
        if any(under(value, path) for path in container_only):
            return str(rootfs) + value
        return value

    env = {name: host(value) for name, value in contract.env.items()}
    # the venv stands in for the image's Python, so that `serve` resolves as it does there
    env.update(HOME=host(home), PATH=f"{Path(sys.executable).parent}:{SYSTEM_PATH}")
    # the container's /tmp (where entrypoint.sh writes PROFILE_YAML) is its own, not the host's
    (rootfs / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(rootfs / "tmp")
    # tini is not installed here; it only forwards signals to entrypoint.sh, which execs serve
    command = list(contract.command)
    if command[:2] == ["tini", "--"]:
        command = command[2:]
    assert command[0] in IMAGE_FILES, f"{command}: not a file this test can map to the repository"
    command = ["sh", str(IMAGE_FILES[command[0]]), *command[1:]]
    probe = contract.probe if isinstance(contract.probe, HttpGet) else [*map(host, contract.probe)]
    return HostRun(command, env, probe, rootfs, cache, shared)


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:]


def check_once(run: HostRun, contract: Contract) -> str | None:
    """One run of the health check, as the platform runs it (with its timeout): None if it
    passed, else why not. A check over its timeout fails, as the runtime counts it."""
    if isinstance(run.probe, HttpGet):
        url = f"http://127.0.0.1:{contract.port}{run.probe.path}"
        try:
            answer = httpx.get(url, headers=run.probe.headers, timeout=contract.probe_timeout_s)
        except httpx.TimeoutException:
            return f"over its {contract.probe_timeout_s:.0f} s timeout"
        except httpx.TransportError as e:
            return f"GET {run.probe.path}: {type(e).__name__}"
        return None if answer.status_code == 200 else f"GET {run.probe.path}: {answer.status_code}"
    try:
        check = subprocess.run(
            run.probe, env=run.env, cwd=ROOT, capture_output=True, text=True,
            timeout=contract.probe_timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"over its {contract.probe_timeout_s:.0f} s timeout"
    return None if check.returncode == 0 else f"exit {check.returncode}: {check.stderr[-300:]}"


def wait_healthy(
    proc: subprocess.Popen[bytes], run: HostRun, contract: Contract, log: Path
) -> float:
    """Seconds until the health check passes; the entrypoint's death ends the wait at once."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the entrypoint exited {proc.returncode} before healthy:\n{tail(log)}")
        last = check_once(run, contract)
        if last is None:
            return time.monotonic() - start
        if time.monotonic() - start > START_CAP_S:
            pytest.fail(f"not healthy in {START_CAP_S} s (last check: {last}):\n{tail(log)}")
        time.sleep(POLL_S)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def session_members(sid: int) -> list[str]:
    left = []
    for p in psutil.process_iter(["name", "status"]):
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.info['name']}")
    return left


def profile_read(output: str) -> Path:
    """The profile file the launcher read (its first line: `serve: profile PATH: ...`)."""
    m = re.match(r"serve: profile (\S+): ", output)
    assert m, output[:2000]
    return Path(m[1])


def assert_space_kept_its_caches(contract: Contract, run: HostRun) -> None:
    """A Space runs as UID 1000 and keeps only /data: the caches must be created there (serve's,
    with the generated model; vLLM's compile cache), and nothing written under /root, which UID
    1000 cannot write (the test runs as whoever runs it, so it is checked here instead)."""
    data = run.inside(SPACE_STORAGE)
    kept = sorted(str(p.relative_to(data)) for p in data.iterdir())
    print(f"hf-space: {SPACE_STORAGE} holds {kept}; /root holds "
          f"{sorted(p.name for p in run.inside(IMAGE_HOME).iterdir())}")  # fmt: skip
    serve_cache = Path(contract.env["XDG_CACHE_HOME"]) / "serve"  # settings.cache_root
    assert under(str(serve_cache), SPACE_STORAGE), serve_cache
    assert any(run.inside(str(serve_cache)).glob("models/*")), f"no model under {serve_cache}"
    assert under(run.vllm_cache, SPACE_STORAGE) and run.vllm_cache_shared, run.vllm_cache
    assert any(run.inside(run.vllm_cache).iterdir()), "vLLM's compile cache is empty"
    assert not any(run.inside(IMAGE_HOME).iterdir()), "written under /root"


AFTER_STOP: dict[str, Callable[[Contract, HostRun], None]] = {
    "hf-space": assert_space_kept_its_caches,
}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The container's filesystem: one path for the module (see the module's docstring)."""
    return tmp_path_factory.mktemp("rootfs")


@pytest.fixture(scope="module")
def vllm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vLLM's compile cache on a volume, shared by the module's cases: a warm cache, as a
    restarted container with its volume has (same image, same profile, same in-container paths).
    Empty at the first case, which compiles cold; a target whose cache is on no volume (an
    endpoint, a SkyServe replica) never sees it and compiles cold every time, as it would."""
    return tmp_path_factory.mktemp("vllm-cache")


# Run for real: every target but skyserve, whose container runs the same entrypoint with the
# profile in PROFILE_YAML as hf-endpoint's (its contract is still extracted and checked below);
# each run is a cold vLLM start of one to two minutes on a 2-core CI machine.
RUN_TARGETS = ("compose", "hf-endpoint", "hf-space", "k8s")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_renders_a_complete_contract(target: str) -> None:
    render, extract = TARGETS[target]
    profile = loader.load("tiny-cpu", sets=["port=8123"], environ={}).profile
    contract = extract(render(profile))
    assert contract.grace_s > 0 and contract.port == 8123 and contract.command
    assert contract.profile_text.strip() and contract.probe


@pytest.mark.e2e
@requires_vllm
@pytest.mark.parametrize("target", RUN_TARGETS)
def test_rendered_container_is_healthy_then_stops_within_its_grace(
    target: str, tmp_path: Path, rootfs: Path, vllm_cache: Path
) -> None:
    render, extract = TARGETS[target]
    # the contract is the container's, not vLLM's compiler: no torch.compile (30-40 s a cold
    # start here, four starts in CI)
    sets = [f"port={free_port()}", "enforce_eager=true"]
    profile = loader.load("tiny-cpu", sets=sets, environ={}).profile
    files = render(profile)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    contract = extract(files)
    shutil.rmtree(rootfs)
    rootfs.mkdir()  # a new container
    run = on_this_host(contract, rootfs, vllm_cache)
    cache_before = len(list(vllm_cache.rglob("*"))) if run.vllm_cache_shared else 0
    log = tmp_path / "container.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            run.command, cwd=ROOT, env=run.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    used = None
    try:
        ready_s = wait_healthy(proc, run, contract, log)
        assert listening(contract.port), f"healthy, but nothing listens on port {contract.port}"
        # the launcher read the profile the files deliver (not the image's PROFILE), and serves
        # its model on the rendered port
        used = profile_read(log.read_text(errors="replace"))
        assert used.read_text().rstrip("\n") == contract.profile_text.rstrip("\n"), used
        models = httpx.get(f"http://127.0.0.1:{contract.port}/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == [profile.model_id], models

        # the runtime signals PID 1 only (entrypoint.sh, which exec'd serve), never the group
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=contract.grace_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"running {contract.grace_s:.0f} s after SIGTERM, when the runtime "
                        f"SIGKILLs it:\n{tail(log)}")  # fmt: skip
        stop_s = time.monotonic() - stopping

        output = log.read_text(errors="replace")
        compiled = re.search(r"compile ([\d.]+) s", output)
        cache = (f"shared, {cache_before} entries before" if run.vllm_cache_shared
                 else "the container's own")  # fmt: skip
        print(f"{target}: healthy after {ready_s:.1f} s (torch.compile "
              f"{compiled[1] if compiled else '?'} s; vLLM cache {cache}); stopped {stop_s:.1f} s "
              f"after SIGTERM (grace {contract.grace_s:.0f} s)")  # fmt: skip
        assert code == ExitCode.TERMINATED, output[-4000:]  # 143: a clean stop on SIGTERM
        assert server_groups(output), output[-4000:]  # else the check below is empty
        assert_nothing_left(output, contract.port)
        assert not session_members(proc.pid)
        if target in AFTER_STOP:
            AFTER_STOP[target](contract, run)
    finally:
        groups = server_groups(log.read_text(errors="replace")) if log.exists() else []
        for pgid in (proc.pid, *groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${HF_TOKEN:-}", {}, ""),
        ("${HF_TOKEN:-}", {"HF_TOKEN": "t"}, "t"),
        ("${K:-d}", {"K": ""}, "d"),
        ("${K-d}", {"K": ""}, ""),
        ("${K:?set K}", {"K": "v"}, "v"),
        ("${K:?set K}", {"K": ""}, ComposeRefused),
        ("${K?set K}", {}, ComposeRefused),
        ("$$K ${K:+on}", {"K": "v"}, "$K on"),
        ("$(K)", {}, ComposeRefused),
    ],
)  # fmt: skip
def test_interpolation_stands_in_for_composes(
    value: str, environ: dict[str, str], expected: Any
) -> None:
    if isinstance(expected, str):
        assert interpolate(value, environ) == expected
    else:
        with pytest.raises(expected):
            interpolate(value, environ)
