"""The container contract of `serve deploy`, kept without a container runtime.

There is no Docker engine or Kubernetes cluster where this project is tested, so what a runtime
would do with the rendered files is done here by hand, and every input is read back from the
rendered files (and the Dockerfile of the image they name), never from serve's Python constants:
the image's entrypoint runs as a plain process with the rendered environment; the rendered health
check is run until it passes; SIGTERM goes to the entrypoint's process (PID 1 in the container) and
it must exit with the documented clean-stop code within the rendered grace period, leaving no
process and no listener behind.

What a runtime would have provided, and what stands in for it here (see `on_this_host`):
- the files mounted into the container (the profile) -> the same text in a tmp file;
- the cache volumes -> empty tmp directories, through the variable that points each cache there;
- the image's root home (/root, everything under it not on a volume) -> an empty tmp directory;
- tini (PID 1) -> nothing: entrypoint.sh execs serve, so the SIGTERM reaches serve either way.

A new target is one extractor: rendered files -> `Contract` (an hf-space Dockerfile would read its
ENV lines with `dockerfile_env`, as the image's are read here).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import psutil
import pytest
import yaml

from openai_server import loader
from openai_server.deploy import compose, k8s
from openai_server.errors import ExitCode
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
# The image runs as root: HOME is /root, and a fresh container's /root holds nothing but volumes.
IMAGE_HOME = "/root"
# Each cache volume, and the variable that makes the process use the directory mounted there. A
# volume not named here fails the test: a mount this test cannot stand in for must not pass unseen.
CACHE_VARIABLES = {"/root/.cache/huggingface": "HF_HOME", "/root/.cache/vllm": "VLLM_CACHE_ROOT"}
# Mounts the host already has: the host's /dev/shm stands in for shm_size / a memory emptyDir.
HOST_PROVIDED = ("/dev/shm",)
# Docker's default PATH, after the venv whose `serve` the image would have installed.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Contract:
    """What a container runtime takes from one target's rendered files, in the container's terms."""

    env: dict[str, str]  # the container's environment: the image's ENV, then the rendered one
    # what the container runs: the image's ENTRYPOINT (neither target overrides it)
    command: tuple[str, ...]
    probe: tuple[str, ...]  # the health check, run inside the container with `env`
    probe_timeout_s: float
    grace_s: float  # SIGTERM -> SIGKILL
    port: int  # the container port the rendered file publishes
    files: dict[str, str]  # in-container path -> text of a rendered file mounted there
    volumes: tuple[str, ...]  # in-container paths of volumes (empty at a first start)


# --- the image (the Dockerfile both targets run) ----------------------------------------------


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
    return Contract(
        env={**dockerfile_env(IMAGE), **kubelet_env(container.get("env", []), K8S_SECRETS)},
        command=image_entrypoint(IMAGE),
        probe=tuple(startup["exec"]["command"]),
        probe_timeout_s=float(startup.get("timeoutSeconds", 1)),  # Kubernetes' default: 1 s
        grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
        port=ports[0],
        files=mounted,
        volumes=tuple(volumes),
    )


TARGETS: dict[
    str, tuple[Callable[[Profile], dict[str, str]], Callable[[dict[str, str]], Contract]]
] = {
    "compose": (compose.render, compose_contract),
    "k8s": (k8s.render, k8s_contract),
}


# --- the container, as a process on this host ---------------------------------------------------


@dataclass(frozen=True)
class HostRun:
    command: list[str]
    env: dict[str, str]
    probe: list[str]


def on_this_host(contract: Contract, tmp: Path) -> HostRun:
    """The contract with every in-container path replaced by what stands in for it here."""
    paths: dict[str, Path] = {}
    for path, text in contract.files.items():
        # the rendered PROFILE is /etc/serve/profile.yaml, which does not exist on this host: the
        # mounted text is written to a tmp file and PROFILE (and the probe's --profile) point at it
        paths[path] = tmp / "mounts" / path.lstrip("/")
        paths[path].parent.mkdir(parents=True, exist_ok=True)
        paths[path].write_text(text)
    cache_env = {}
    for path in contract.volumes:
        if path in HOST_PROVIDED:
            continue
        assert path in CACHE_VARIABLES, f"{path}: a volume this test has no stand-in for"
        # an empty directory, as a new volume is; its variable points the process at it (only
        # for the volumes the rendered file names: an unmounted cache stays under HOME below)
        paths[path] = tmp / "volumes" / path.lstrip("/")
        paths[path].mkdir(parents=True)
        cache_env[CACHE_VARIABLES[path]] = str(paths[path])
    # not host's ~: the serve cache (generated model, learned flags) starts empty, as in the image
    paths[IMAGE_HOME] = tmp / "home"
    paths[IMAGE_HOME].mkdir()

    def host(value: str) -> str:
        for path in sorted(paths, key=len, reverse=True):
            if value == path or value.startswith(path + "/"):
                return str(paths[path]) + value[len(path) :]
        return value

    env = {name: host(value) for name, value in contract.env.items()}
    # the venv stands in for the image's Python, so that `serve` resolves as it does there
    env.update(
        cache_env, HOME=str(paths[IMAGE_HOME]), PATH=f"{Path(sys.executable).parent}:{SYSTEM_PATH}"
    )
    # tini is not installed here; it only forwards signals to entrypoint.sh, which execs serve
    command = list(contract.command)
    if command[:2] == ["tini", "--"]:
        command = command[2:]
    assert command[0] in IMAGE_FILES, f"{command}: not a file this test can map to the repository"
    command = ["sh", str(IMAGE_FILES[command[0]]), *command[1:]]
    return HostRun(command, env, [host(arg) for arg in contract.probe])


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:]


def wait_healthy(
    proc: subprocess.Popen[bytes], run: HostRun, contract: Contract, log: Path
) -> float:
    """Seconds until the rendered health check passes, run as the runtime runs it (with its
    timeout); the entrypoint's death ends the wait at once."""
    start, last, timeouts = time.monotonic(), "", 0
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the entrypoint exited {proc.returncode} before healthy:\n{tail(log)}")
        try:
            check = subprocess.run(
                run.probe, env=run.env, cwd=ROOT, capture_output=True, text=True,
                timeout=contract.probe_timeout_s,
            )  # fmt: skip
            if check.returncode == 0:
                print(f"health check: passed, {timeouts} runs over its timeout before")
                return time.monotonic() - start
            last = f"exit {check.returncode}: {check.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:  # the runtime counts it as a failed check
            timeouts += 1
            last = f"over its {contract.probe_timeout_s:.0f} s timeout"
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


@pytest.mark.e2e
@requires_vllm
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_rendered_container_is_healthy_then_stops_within_its_grace(
    target: str, tmp_path: Path
) -> None:
    render, extract = TARGETS[target]
    profile = loader.load("tiny-cpu", sets=[f"port={free_port()}"], environ={}).profile
    files = render(profile)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    contract = extract(files)
    run = on_this_host(contract, tmp_path)
    log = tmp_path / "container.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            run.command, cwd=ROOT, env=run.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        ready_s = wait_healthy(proc, run, contract, log)
        assert listening(contract.port), f"healthy, but nothing listens on port {contract.port}"

        # the runtime signals PID 1 only (entrypoint.sh, which exec'd serve), never the group
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=contract.grace_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"running {contract.grace_s:.0f} s after SIGTERM, when the runtime "
                        f"SIGKILLs it:\n{tail(log)}")  # fmt: skip
        stop_s = time.monotonic() - stopping
        print(f"{target}: healthy after {ready_s:.1f} s; stopped {stop_s:.1f} s after SIGTERM "
              f"(grace {contract.grace_s:.0f} s)")  # fmt: skip

        output = log.read_text(errors="replace")
        assert code == ExitCode.TERMINATED, output[-4000:]  # 143: a clean stop on SIGTERM
        assert server_groups(output), output[-4000:]  # else the check below is empty
        assert_nothing_left(output, contract.port)
        assert not session_members(proc.pid)
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
