"""`serve top`'s polling (httpx.MockTransport), GPU section (a fake NVML) and screen layout."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from rich.console import Console

from openai_server.clients.endpoint import Endpoint
from openai_server.top import gpus
from openai_server.top.fetch import poll
from openai_server.top.view import render, sparkline
from openai_server.top.watch import FIRST_FRAME, Watch
from tests.top.test_scrape import text

MODELS = {"object": "list", "data": [{"id": "m", "object": "model"}]}
FLEET = 'serve_fleet_model_ready{model="a"} 1\n'


def client(
    routes: dict[str, tuple[int, str]], seen: list[httpx.Request] | None = None
) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status, body = routes.get(request.url.path, (404, "not found"))
        return httpx.Response(status, text=body)

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_metrics_behind_a_key_say_so() -> None:
    c = client({"/v1/models": (200, json.dumps(MODELS)), "/metrics": (401, "no")})
    p = poll(c, Endpoint("http://h:8000"))
    assert p.status == "no metrics" and "behind a key" in p.reason


def test_the_key_is_sent_to_every_route() -> None:
    seen: list[httpx.Request] = []
    c = client({"/v1/models": (200, json.dumps(MODELS)), "/metrics": (200, text())}, seen)
    assert poll(c, Endpoint("http://h:8000", "k")).status == "ok"
    assert {r.headers["Authorization"] for r in seen} == {"Bearer k"}


def test_a_wrong_key_on_the_models_route_is_not_ready() -> None:
    p = poll(client({"/v1/models": (401, "")}), Endpoint("http://h:8000"))
    assert p.status == "not ready" and "API key" in p.reason


def test_a_fleet_shows_every_model_with_its_state_and_no_figures_from_afar() -> None:
    fleet = {"models": {"a": {"state": "ready", "port": 9, "since": 100.0, "loads": 2},
                        "b": {"state": "failed", "cause": "exit 1", "port": 10, "loads": 1}}}  # fmt: skip
    c = client({"/v1/models": (200, json.dumps(MODELS)), "/metrics": (200, FLEET),
                "/fleet": (200, json.dumps(fleet))})  # fmt: skip
    p = poll(c, Endpoint("http://fleet.example:8000"))  # remote: engines' ports not tried
    assert p.status == "ok" and p.fleet is not None
    frame = Watch("u").frame(p, now=160.0)
    a, b = frame.rows
    assert (a.model, a.state, a.uptime_s, a.restarts, a.figures) == ("a", "ready", 60.0, 1, None)
    assert (b.state, b.cause) == ("failed", "exit 1")


def frame_for(n_models: int) -> tuple[Any, Watch]:
    body = "".join(text(100 * i, 50 * i, running=i, model=f"model-{i}") for i in range(n_models))
    c = client({"/v1/models": (200, json.dumps(MODELS)), "/metrics": (200, body)})
    watch = Watch("http://127.0.0.1:8000")
    first = watch.frame(poll(c, Endpoint("http://127.0.0.1:8000")), now=2000.0)
    assert first.note == FIRST_FRAME
    second = watch.frame(poll(c, Endpoint("http://127.0.0.1:8000")), now=2001.0)
    assert second.note is None
    return second, watch


NO_GPU = gpus.GpuSection(False, gpus.REMOTE)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 48)])
def test_the_screen_fits_the_terminal_even_with_many_models(width: int, height: int) -> None:
    frame, watch = frame_for(6)
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(render(frame, NO_GPU, watch, width, height))
    lines = console.export_text().splitlines()
    assert len(lines) <= height and max(map(len, lines)) <= width
    assert "model-0 ready" in lines[1]
    # 80x24 shows what fits and says what it hid; 160x48 shows all six and the GPU line
    assert ("more lines" in lines[-1]) == (height == 24)


def test_sparkline_scales_to_its_top() -> None:
    assert sparkline([0, 0.5, 1.0], 10, top=1.0) == "▁▅█"
    assert sparkline([5, 10], 1) == "█" and sparkline([], 5) == ""


class FakeNvml:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def nvmlInit(self) -> None:
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(total=150 * 2**30, used=120 * 2**30, free=30 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 412_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        raise RuntimeError("Not Supported")  # e.g. a MIG slice: that figure alone is empty

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 61

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return 1980

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=4242, usedGpuMemory=119 * 2**30)]


def test_gpu_section_from_nvml_names_the_model_holding_memory() -> None:
    section = gpus.read(True, FakeNvml(), name_of=lambda pid, line: "tiny-phi3")
    (g,) = section.gpus
    assert (g.util_pct, g.power_w, g.power_limit_w, g.temp_c, g.sm_mhz) == (87, 412, None, 61, 1980)
    assert g.holders == (gpus.Holder(4242, 119 * 2**30, "tiny-phi3"),)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(frame_for(1)[0], section, Watch("u"), 80, 24))
    shown = console.export_text()
    assert "GPU0 NVIDIA H200 util 87% mem 120.0/150G 412/-" in shown and "tiny-phi3 119.0G" in shown


def test_no_gpu_section_for_a_remote_server_or_a_cpu_host() -> None:
    assert gpus.read(False, FakeNvml()).reason == gpus.REMOTE
    assert "no NVIDIA driver" in gpus.read(True, FakeNvml(fail=True)).reason


@pytest.mark.parametrize(
    ("cmdline", "model"),
    [
        (
            "python -m vllm.entrypoints.openai.api_server --model /m/x --served-model-name tiny",
            "tiny",
        ),
        ("vllm serve Qwen/Qwen3-8B --port 8000", "Qwen/Qwen3-8B"),
        ("python -m vllm.entrypoints.openai.api_server --model=/models/llama", "/models/llama"),
        ("VLLM::EngineCore", None),
    ],
)
def test_served_model_from_a_command_line(cmdline: str, model: str | None) -> None:
    assert gpus.served_model(cmdline) == model


class FakeNvmlV2(FakeNvml):
    """A driver with the v2 memory query: its `used` leaves the driver's reserve out."""

    nvmlMemory_v2 = object()

    def nvmlDeviceGetMemoryInfo(self, h: int, version: object = None) -> Any:
        if version is None:
            return super().nvmlDeviceGetMemoryInfo(h)
        return SimpleNamespace(total=150 * 2**30, used=119 * 2**30, reserved=2**30)


def test_memory_used_is_nvidia_smis_figure_where_the_driver_has_the_v2_query() -> None:
    (g,) = gpus.read(True, FakeNvmlV2(), name_of=lambda pid, line: "x").gpus
    assert g.used_bytes == 119 * 2**30


def test_a_local_fleet_shows_its_engines_figures() -> None:
    fleet = {"models": {"a": {"state": "ready", "port": 9001, "since": 100.0, "loads": 1}}}
    by_url = {
        "http://127.0.0.1:8000/v1/models": json.dumps(MODELS),
        "http://127.0.0.1:8000/metrics": FLEET,
        "http://127.0.0.1:8000/fleet": json.dumps(fleet),
        "http://127.0.0.1:9001/metrics": text(10, 20, running=2, model="a"),
    }
    c = httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, text=by_url[str(r.url)]) if str(r.url) in by_url
        else httpx.Response(404)))  # fmt: skip
    (row,) = Watch("u").frame(poll(c, Endpoint("http://127.0.0.1:8000")), now=200.0).rows
    assert row.model == "a" and row.figures is not None and row.figures.running == 2


def test_this_hosts_own_address_is_local_and_another_is_not() -> None:
    import psutil

    from openai_server.top.fetch import is_local

    own = next(a.address for addrs in psutil.net_if_addrs().values() for a in addrs
               if a.family.name == "AF_INET" and not a.address.startswith("127."))  # fmt: skip
    assert is_local(f"http://{own}:8000") and is_local("http://localhost:8000")
    mine = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    other = next(a for a in ("198.51.100.1", "203.0.113.1", "192.0.2.1") if a not in mine)
    assert not is_local(f"http://{other}:8000")  # documentation ranges (RFC 5737)
