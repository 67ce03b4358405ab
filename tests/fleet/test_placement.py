"""Engines that share a GPU must fit on it together: vLLM takes gpu_memory_utilization of every GPU
it uses. Pure: the fleet's profiles and a GPU count (NVML's, on a GPU host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_server.errors import RefusedError
from openai_server.fleet.placement import check_shares
from openai_server.fleet.spec import Member, load_fleet


def members(tmp: Path, *sets: str) -> tuple[Member, ...]:
    (tmp / "gpu.yaml").write_text("model: org/m\n")  # no gpu_memory_utilization: vLLM's 0.9
    lines = [f"  m{i}: {{profile: gpu.yaml, set: {{{s}}}}}" for i, s in enumerate(sets)]
    (tmp / "fleet.yaml").write_text("models:\n" + "\n".join(lines) + "\n")
    return load_fleet(tmp / "fleet.yaml").members


def test_two_engines_at_vllms_default_share_cannot_share_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(RefusedError) as caught:
        check_shares(members(tmp_path, "", ""), 1, "fleet.yaml")
    line = caught.value.message
    assert line.startswith("fleet.yaml: GPU 0 is asked for 1.80 of its memory (m0 0.90 + m1 0.90")
    assert "env: CUDA_VISIBLE_DEVICES" in line and "at most 0.95" in line


@pytest.mark.parametrize(
    ("sets", "count", "shares"),
    [
        (("gpu_memory_utilization: 0.45", "gpu_memory_utilization: 0.45"), 1, {0: 0.90}),
        (("env.CUDA_VISIBLE_DEVICES: '0'", "env.CUDA_VISIBLE_DEVICES: '1'"), 2, {0: 0.9, 1: 0.9}),
        (("tensor_parallel_size: 2, gpu_memory_utilization: 0.5",
          "env.CUDA_VISIBLE_DEVICES: '1', gpu_memory_utilization: 0.4"), 2, {0: 0.5, 1: 0.9}),
    ],
)  # fmt: skip
def test_engines_that_fit_together_pass(
    tmp_path: Path, sets: tuple[str, ...], count: int, shares: dict[int, float]
) -> None:
    got = check_shares(members(tmp_path, *sets), count, "fleet.yaml")
    assert got == pytest.approx(shares)


def test_a_tensor_parallel_engine_over_the_others_gpu_is_refused(tmp_path: Path) -> None:
    both = members(tmp_path, "tensor_parallel_size: 2, gpu_memory_utilization: 0.6",
                   "env.CUDA_VISIBLE_DEVICES: '1', gpu_memory_utilization: 0.6")  # fmt: skip
    with pytest.raises(RefusedError, match=r"GPU 1 is asked for 1.20 of its memory \(m0 0.60"):
        check_shares(both, 2, "fleet.yaml")
