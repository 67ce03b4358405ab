"""Failures explained: each captured (cpu-0.32-*) or source-reconstructed (gpu-*) vLLM failure
output maps to its exit code, a one-line cause with vLLM's own numbers, and the profile change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openai_server.errors import ExitCode
from openai_server.launch import diagnose as diagnose_mod
from openai_server.launch.diagnose import FatalWatch, fatal_line
from openai_server.profile import Profile
from openai_server.render import key_of

# what the launcher passes (launch/entry.py): the profile's keys, so that a cause names one
PROFILE_KEYS = frozenset(Profile.model_fields)


def diagnose(lines: list[str], **kw: Any) -> diagnose_mod.Diagnosis | None:
    return diagnose_mod.diagnose(lines, **{"profile_keys": PROFILE_KEYS, **kw})


LOGS = Path(__file__).resolve().parents[1] / "faults" / "logs"


def log(name: str) -> list[str]:
    return [ln for ln in (LOGS / name).read_text().splitlines() if not ln.startswith("#")]


CASES = [
    # fixture, exit code, in the cause, in the fix
    ("cpu-0.32-kv-cache-too-small.log", ExitCode.KV_CACHE_TOO_SMALL,
     "max_model_len 600000 needs 2.29 GiB", "set max_model_len: 262016 (vLLM's own estimate)"),
    ("gpu-0.26-kv-cache-too-small.log", ExitCode.KV_CACHE_TOO_SMALL,
     "needs 48.00 GiB of KV cache, only 8.93 GiB", "set max_model_len: 24384"),
    ("gpu-0.4-kv-cache-too-small-old.log", ExitCode.KV_CACHE_TOO_SMALL,
     "the 2432 tokens", "set max_model_len: 2432"),
    ("gpu-0.26-bf16-t4.log", ExitCode.BF16_UNSUPPORTED,
     "Tesla T4 (compute capability 7.5)", "set dtype: half"),
    ("gpu-0.26-gpu-memory-busy.log", ExitCode.GPU_MEMORY_BUSY,
     "12.41 of 79.18 GiB free", "gpu_memory_utilization: 0.14"),
    ("gpu-0.26-cuda-oom.log", ExitCode.CUDA_OOM,
     "loading the weights (tried to allocate 1.75 GiB)", "quantization"),
    ("gpu-0.26-nccl-shm.log", ExitCode.NCCL_SHM, "/dev/shm", "--ipc=host"),
    ("cpu-0.32-unrecognized-argument.log", ExitCode.UNRECOGNIZED_ARGUMENT,
     "does not accept --no-such-flag", "remove --no-such-flag from extra_args"),
    ("cpu-0.32-port-in-use.log", ExitCode.PORT_IN_USE, "port 8503 is already in use", "set port:"),
    ("cpu-0.32-model-path-missing.log", ExitCode.MODEL_NOT_FOUND,
     "/tmp/cap/no-such-model is not a directory", "set model: to an existing local directory"),
    ("cpu-0.32-hub-offline.log", ExitCode.MODEL_NOT_FOUND,
     "someorg/no-such-model is not in the local Hugging Face cache",
     "huggingface-cli download someorg/no-such-model"),
    ("cpu-0.32-cpu-attention-head-size.log", ExitCode.CPU_ATTENTION_HEAD_SIZE,
     "head_dim=16", "GPU profile"),
    ("cpu-0.32-engine-killed.log", ExitCode.ENGINE_DIED,
     "engine core process (VLLM::EngineCore) died", "restart: on-failure"),
    # the worker's exception, printed before EngineCore's wrapper of it, is the root cause
    ("gpu-0.33-tp2-engine-failed-to-start.log", ExitCode.ENGINE_DIED,
     "the engine core (EngineCore) failed to start: AssertionError: Error in memory profiling",
     "see the engine's error"),
]  # fmt: skip


@pytest.mark.parametrize(("fixture", "code", "cause", "fix"), CASES, ids=[c[0] for c in CASES])
def test_known_failure_is_explained(fixture: str, code: ExitCode, cause: str, fix: str) -> None:
    found = diagnose(log(fixture))
    assert found is not None
    assert found.exit_code == code
    assert cause in found.cause
    assert fix in found.fix
    assert "\n" not in found.cause + found.fix
    # the relevant lines: the matching line and a few around it, without traceback frames
    assert 1 <= len(found.lines) <= 6
    assert not any(ln.lstrip().startswith('File "') for ln in found.lines)


@pytest.mark.parametrize("fixture", ["cpu-0.32-ready.log", "gpu-0.26-ready.log"])
def test_a_healthy_start_is_no_failure(fixture: str) -> None:
    assert diagnose(log(fixture)) is None


def test_unknown_failure_is_none() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ZeroDivisionError: division by zero",
    ]
    assert diagnose(lines) is None


def test_every_failure_class_has_its_own_code_between_10_and_29() -> None:
    codes = [c for c in ExitCode if 10 <= c <= 29]
    assert len(codes) == len({int(c) for c in codes}) >= 10
    assert {c[1] for c in CASES} <= set(codes)


@pytest.mark.parametrize(
    ("flag", "key"),
    [
        ("--max-num-seqs", "max_num_seqs"),
        ("--no-enable-prefix-caching", "enable_prefix_caching"),
        ("--no-such-flag", "no_such_flag"),
        ("--max-model-len=4096", "max_model_len"),
    ],
)
def test_key_of_flag(flag: str, key: str) -> None:
    assert key_of(flag) == key


def test_unrecognized_flag_names_the_profile_key_it_came_from() -> None:
    found = diagnose(["api_server.py: error: unrecognized arguments: --max-num-seqs 8"])
    assert found is not None and found.exit_code == ExitCode.UNRECOGNIZED_ARGUMENT
    assert "(from profile key max_num_seqs)" in found.cause
    assert found.fix.startswith("remove max_num_seqs from the profile")


def test_negated_flag_maps_to_its_boolean_key() -> None:
    found = diagnose(["error: unrecognized arguments: --no-enable-prefix-caching"])
    assert found is not None and "profile key enable_prefix_caching" in found.cause


def test_profile_keys_given_by_the_caller_win() -> None:
    found = diagnose(["error: unrecognized arguments: --foo"], profile_keys={"foo"})
    assert found is not None and "profile key foo" in found.cause


def test_removed_flag_gets_its_hint() -> None:
    found = diagnose(["api_server.py: error: unrecognized arguments: --disable-log-requests"])
    assert found is not None and "--enable-log-requests" in found.fix


def test_ambiguous_abbreviation_is_a_bad_flag() -> None:
    line = "api_server.py: error: ambiguous option: --max-num could match --max-num-seqs, --max-num-batched-tokens"
    found = diagnose([line])
    assert found is not None and found.exit_code == ExitCode.UNRECOGNIZED_ARGUMENT
    assert "--max-num-seqs" in found.fix


def test_port_comes_from_the_caller_when_the_log_does_not_say() -> None:
    found = diagnose(["OSError: [Errno 98] Address already in use"], port=8123)
    assert found is not None and "port 8123" in found.cause


def test_cpu_memory_busy_suggests_sizing_the_kv_cache() -> None:
    # docs/vllm-facts.md: a second vLLM on a 24 GiB machine
    line = (
        "ValueError: Available memory on node 0 (12.14/13.46 GiB) on startup is less than "
        "desired CPU memory utilization (0.92, 12.38 GiB). On the CPU backend, ..."
    )
    found = diagnose([line])
    assert found is not None and found.exit_code == ExitCode.GPU_MEMORY_BUSY
    assert "12.14 of 13.46 GiB" in found.cause and "VLLM_CPU_KVCACHE_SPACE" in found.fix


def test_engine_start_failure_with_an_unknown_root_cause_names_it() -> None:
    lines = [
        "(EngineCore pid=9) ERROR 11-20 12:00:00 [core.py:1330] EngineCore failed to start.",
        "(EngineCore pid=9) ERROR 11-20 12:00:00 [core.py:1330] KeyError: 'rope_type'",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core "
        "proc(s): {'EngineCore': 1}",
    ]
    found = diagnose(lines)
    assert found is not None and found.exit_code == ExitCode.ENGINE_DIED
    assert found.cause.endswith("failed to start: KeyError: 'rope_type'")


def test_engine_exit_code_is_reported() -> None:
    found = diagnose(["RuntimeError: Process EngineCore (PID: 4242) died with exit code -9"])
    assert found is not None and found.values["engine_exit_code"] == -9
    assert "exit code -9" in found.cause


def test_colour_codes_are_ignored() -> None:
    found = diagnose(["\x1b[31mERROR\x1b[0m OSError: [Errno 98] Address already in use"], port=1)
    assert found is not None and found.exit_code == ExitCode.PORT_IN_USE
    assert "\x1b" not in "".join(found.lines)


def test_invalid_value_names_the_profile_key() -> None:
    line = "api_server.py: error: argument --dtype: invalid choice: 'bf16' (choose from auto, half)"
    found = diagnose([line])
    assert found is not None and found.exit_code == ExitCode.UNRECOGNIZED_ARGUMENT
    assert "(from profile key dtype): invalid choice: 'bf16'" in found.cause
    assert found.fix.startswith("change dtype to")


def test_taken_torch_distributed_port_is_not_blamed_on_the_api_port() -> None:
    line = (
        "torch.distributed.DistNetworkError: The server socket has failed to listen on any local "
        "network address. port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: "
        "address already in use"
    )
    found = diagnose([line], port=8000)
    assert found is not None and found.exit_code == ExitCode.PORT_IN_USE
    assert "port 29500 (torch.distributed" in found.cause and "VLLM_PORT" in found.fix


_P = "(EngineCore pid=4530) ERROR 11-27 03:12:55 [core.py:1584] "
_W = "(Worker_TP1 pid=4602) ERROR 11-27 03:12:55 [multiproc_executor.py:1057] "


@pytest.mark.parametrize(
    ("line", "fatal"),
    [
        # vLLM 0.26 to 0.33's own wording (v1/engine/core.py, v1/executor/multiproc_executor.py)
        (_P + "EngineCore failed to start.", True),
        (_P + "EngineCore encountered a fatal error.", True),
        (_W + "WorkerProc failed to start.", True),
        (_W + "WorkerProc failed.", True),
        ("(EngineCore pid=9) ERROR 11-27 03:12:55 [multiproc_executor.py:381] Worker proc "
         "VllmWorker-1 died unexpectedly (exit code: -9), shutting down executor.", True),
        # VLLM_LOGGING_COLOR=1, and no process prefix
        ("\x1b[31mERROR\x1b[0m 11-27 03:12:55 [core.py:1584] EngineCore failed to start.", True),
        ("ERROR 11-27 03:12:55 [core.py:1584] EngineCore failed to start.", True),
        # the traceback after it, a recoverable worker error, and the same words not logged
        (_P + "Traceback (most recent call last):", False),
        (_P + "RuntimeError: Worker failed with error 'x', please check the stack trace above", False),
        (_W.replace("1057", "1189") + "WorkerProc hit an exception.", False),
        ("(APIServer pid=1) INFO 11-27 03:12:55 [logger.py:1] prompt: 'EngineCore failed to start.'",
         False),
        ("EngineCore failed to start.", False),
    ],
)  # fmt: skip
def test_fatal_line(line: str, fatal: bool) -> None:
    assert fatal_line(line) is fatal


def test_fatal_lines_of_the_fixtures() -> None:
    fatal = [ln for ln in log("gpu-0.33-tp2-engine-failed-to-start.log") if fatal_line(ln)]
    assert [ln.rsplit("] ", 1)[1] for ln in fatal] == ["EngineCore failed to start."]
    for healthy in ("cpu-0.32-ready.log", "gpu-0.26-ready.log"):
        assert not any(fatal_line(ln) for ln in log(healthy))


def test_worker_death_names_the_worker_and_its_exit_code() -> None:
    line = (
        "(EngineCore pid=9) ERROR 11-27 03:12:55 [multiproc_executor.py:381] Worker proc "
        "VllmWorker-1 died unexpectedly (exit code: -9), shutting down executor."
    )
    found = diagnose([line])
    assert found is not None and found.exit_code == ExitCode.ENGINE_DIED
    assert "a worker process of the engine failed (Worker proc VllmWorker-1)" in found.cause


def test_a_worker_exception_then_a_broadcast_wait_is_fatal() -> None:
    lines = log("gpu-0.26-tp2-worker-exception-hang.log")
    watch = FatalWatch()
    said = [(i, found) for i, ln in enumerate(lines) if (found := watch.feed(ln))]
    assert said, "not fatal"
    i, found = said[0]
    assert "WorkerProc hit an exception." in found
    assert "No available shared memory broadcast block found" in lines[i]
    # the exception alone (a failed runtime LoRA load answers its request and serves on) is not
    alone = FatalWatch()
    assert not [ln for ln in lines if "shm_broadcast" not in ln and alone.feed(ln)]
