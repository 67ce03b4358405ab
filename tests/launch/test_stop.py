"""The end of a run says the truth: a clean stop, or what was left (processes, GPU memory).

A real server process group is started and stopped. What SIGKILL cannot leave behind on demand (a
process in uninterruptible sleep in a GPU driver) is stood in for by a real process outside the
group that the group's member list reports, and GPU memory by NVML faked at its boundary."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from openai_server.command import Command
from openai_server.errors import ExitCode, Interrupted, StartFailed, StopIncomplete
from openai_server.launch import gpu_release, supervisor
from openai_server.launch.guardian import Guardian
from openai_server.launch.options import LaunchOptions, Timing
from openai_server.launch.reporter import Reporter
from tests.conftest import modules_loaded_by

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def started() -> Iterator[tuple[supervisor.Run, io.StringIO]]:
    out = io.StringIO()
    opts = LaunchOptions("http://127.0.0.1:9", "m", timing=Timing(grace=2))
    run = supervisor.Run(Command(SLEEPER), opts, Reporter("plain", out=out), {})
    guardian = Guardian(2)
    run.start(guardian)
    yield run, out
    guardian.close()
    run.server.stop(1)


@pytest.fixture
def stray() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_clean_stop_says_none_left(started: tuple[supervisor.Run, io.StringIO]) -> None:
    run, out = started
    pid = run.server.pid
    supervisor._stop(run, run.opts, run.ui, None)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "none left" in out.getvalue().splitlines()[-1]


def test_processes_left_after_the_stop_are_an_error_not_a_success_line(
    started: tuple[supervisor.Run, io.StringIO], stray: subprocess.Popen[bytes]
) -> None:
    run, out = started
    real_members = run.server.members
    run.server.members = lambda: [*real_members(), stray.pid]  # type: ignore[method-assign]
    with pytest.raises(StopIncomplete) as caught:
        supervisor._stop(run, run.opts, run.ui, Interrupted(2))
    assert caught.value.exit_code == ExitCode.STOP_INCOMPLETE
    assert f"left after SIGKILL: [{stray.pid}]" in caught.value.message
    assert "(after: stopped by SIGINT" in caught.value.message
    assert "none left" not in out.getvalue()


def test_gpu_memory_still_held_after_the_stop_is_an_error(
    started: tuple[supervisor.Run, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, out = started
    pid = run.server.pid
    monkeypatch.setattr(gpu_release, "holders", lambda: {pid})  # NVML: the old engine's memory
    monkeypatch.setattr(supervisor, "GPU_RELEASE_TIMEOUT", 0.3)
    with pytest.raises(StopIncomplete, match=rf"stopped processes \[{pid}\] still hold GPU memory"):
        supervisor._stop(run, run.opts, run.ui, None)
    assert "none left" not in out.getvalue()


def test_json_failure_detail_goes_to_the_reporters_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    Reporter("json", out=out).detail("relevant lines", ["a", "b"])
    assert json.loads(out.getvalue()) == {
        "event": "log",
        "title": "relevant lines",
        "lines": ["a", "b"],
    }
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("log_format", "verbose", "tty", "mode"),
    [
        ("auto", False, True, "rich"),
        ("auto", True, True, "plain"),  # the live display would interleave with the raw output
        ("auto", False, False, "plain"),
        ("json", False, True, "json"),
        ("plain", False, True, "plain"),
    ],
)
def test_reporter_mode(log_format: str, verbose: bool, tty: bool, mode: str) -> None:
    assert Reporter.mode_for(log_format, verbose=verbose, tty=tty) == mode  # type: ignore[arg-type]


def test_the_status_line_outlives_a_run_so_a_group_restart_keeps_it() -> None:
    """A node group's head calls run() once per generation of the group with its one reporter:
    a run that ends (here: a server that exits before ready) leaves the live line to the
    reporter's creator, and the next generation's phases still reach it."""
    out = io.StringIO()
    ui = Reporter("rich", out=out)
    opts = LaunchOptions("http://127.0.0.1:9", "m", timing=Timing(grace=2))
    exits = Command([sys.executable, "-c", "raise SystemExit(3)"])
    for generation in (1, 2):
        with pytest.raises(StartFailed):
            supervisor.run(exits, opts, ui)
        assert ui.live, f"the status line was closed by run() in generation {generation}"
        ui.status(f"generation {generation + 1}: starting")
    ui.close()
    assert not ui.live
    assert out.getvalue().count("started the server") == 2, out.getvalue()


def test_the_supervisor_side_never_imports_the_profile_or_the_loader() -> None:
    # process and guardian take a rendered command; the guardian must also start in milliseconds
    loaded = modules_loaded_by("import openai_server.launch.process, openai_server.launch.guardian")
    heavy = ("openai_server.profile", "openai_server.loader", "openai_server.render", "pydantic",
             "yaml", "httpx")  # fmt: skip
    assert [m for m in heavy if m in loaded] == []
    ours = modules_loaded_by("import openai_server.launch.guardian", prefix="openai_server")
    assert ours == ["openai_server", "openai_server.launch", "openai_server.launch.guardian"]


def test_what_a_spawn_announces_comes_before_any_line_of_its_output() -> None:
    # the child prints at once; a pump thread reading before the announcement put a phase event
    # ahead of "started" on a loaded machine (a CI run of 7ebf201)
    from openai_server.launch.process import ServerProcess

    seen: list[str] = []
    server = ServerProcess(Command([sys.executable, "-c", "print('first line', flush=True)"]),
                           {}, [lambda line: seen.append(f"line {line}")])  # fmt: skip

    def spawned(pid: int) -> None:
        time.sleep(0.5)  # long after the child printed
        seen.append(f"spawned {pid}")

    server.start(spawned)
    server.drain_output(10)  # the pump ends with the child's output
    assert seen == [f"spawned {server.pid}", "line first line"]
