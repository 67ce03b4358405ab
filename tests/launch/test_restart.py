"""The restart policy, without processes: which failures restart, the backoff, the limit."""

from __future__ import annotations

import pytest

from openai_server.errors import (
    DiedAfterReady,
    ExitCode,
    Interrupted,
    ReadyTimeout,
    StartFailed,
)
from openai_server.launch.restart import NEVER_RETRIED, RestartPolicy, Restarts


def failed(code: ExitCode | None = None) -> StartFailed:
    return StartFailed("the server exited with code 1 before it was ready", code=code)


@pytest.mark.parametrize(
    ("mode", "failure", "retried"),
    [
        ("never", failed(), False),
        ("on-failure", failed(), True),
        ("on-failure", DiedAfterReady("engine died"), True),
        ("on-failure", failed(ExitCode.CUDA_OOM), True),
        ("on-failure", failed(ExitCode.UNRECOGNIZED_ARGUMENT), False),
        ("on-failure", failed(ExitCode.BF16_UNSUPPORTED), False),
        ("on-failure", failed(ExitCode.KV_CACHE_TOO_SMALL), False),
        ("on-failure", failed(ExitCode.MODEL_NOT_FOUND), False),
        ("on-failure", failed(ExitCode.CPU_ATTENTION_HEAD_SIZE), False),
        ("always", failed(ExitCode.KV_CACHE_TOO_SMALL), True),
        # not a failure of the server: never restarted, whatever the mode
        ("always", Interrupted(2), False),
        ("always", ReadyTimeout("not ready after 1800 s"), False),
    ],
)
def test_which_failures_are_restarted(mode: str, failure: StartFailed, retried: bool) -> None:
    assert RestartPolicy(mode=mode).retries(failure) is retried  # type: ignore[arg-type]


def test_never_retried_is_a_set_of_exit_codes() -> None:
    assert all(isinstance(code, ExitCode) for code in NEVER_RETRIED)


def test_backoff_doubles_to_its_cap_then_the_limit_gives_up() -> None:
    restarts = Restarts(RestartPolicy(mode="always", limit=8, backoff_max=10))
    delays = []
    for now in range(8):
        restart = restarts.after(failed(), float(now), None)
        assert restart is not None and restart.count == now + 1
        delays.append(restart.delay)
    assert delays == [1, 2, 4, 8, 10, 10, 10, 10]
    last = failed()
    assert restarts.after(last, 8.0, None) is None
    assert last.message.startswith("gave up after 8 restarts in 10 min; last failure: ")


def test_restarts_older_than_the_window_do_not_count() -> None:
    restarts = Restarts(RestartPolicy(mode="on-failure", limit=2, window=100))
    assert restarts.after(failed(), 0.0, None) is not None
    assert restarts.after(failed(), 10.0, None) is not None
    assert restarts.after(failed(), 20.0, None) is None  # 2 in the last 100 s
    assert restarts.after(failed(), 111.0, None) is not None  # both aged out


def test_a_run_that_stayed_ready_resets_the_backoff() -> None:
    restarts = Restarts(RestartPolicy(mode="on-failure", stable_after=60))
    assert [restarts.after(failed(), t, None).delay for t in (0.0, 1.0, 2.0)] == [1, 2, 4]  # type: ignore[union-attr]
    short = restarts.after(failed(), 3.0, ready_for=59.0)
    assert short is not None and short.delay == 8
    stable = restarts.after(failed(), 300.0, ready_for=60.0)
    assert stable is not None and stable.delay == 1
