"""Before a restart, the old engine's GPU memory must be back (NVML faked at its boundary)."""

from __future__ import annotations

import pytest

from openai_server.launch import gpu_release
from openai_server.preflight import gpus


def test_waits_until_the_stopped_pids_leave_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [{41, 42}, {42}, set()]
    monkeypatch.setattr(gpu_release, "holders", lambda: answers.pop(0) if answers else set())
    assert gpu_release.wait_released([42], timeout=5)
    assert answers == []


def test_gives_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_release, "holders", lambda: {7})
    assert gpu_release.wait_released([7], timeout=0.3) is False


def test_no_nvml_means_nothing_to_wait_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpus, "detect", lambda: gpus.Hardware((), "none"))
    assert gpu_release.wait_released([1, 2, 3], timeout=0.1)
