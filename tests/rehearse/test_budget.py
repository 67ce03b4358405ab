"""`serve rehearse --as-gpu`: a bigger GPU held to a smaller one's KV-cache budget."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from openai_server.errors import ProfileError
from openai_server.preflight import gpus, memory, models
from openai_server.rehearse.budget import held_to
from tests.conftest import SERVE

H200 = gpus.planned("H200").gpus[0]
H100 = gpus.planned("H100").gpus[0]


def test_an_h100_profile_on_an_h200_gets_the_h100s_budget() -> None:
    b = held_to("H100", 0.92, H200)
    assert b.utilization == 0.521  # 0.92 x 79.18 / 139.80, rounded down
    assert b.utilization * H200.total_bytes <= 0.92 * H100.total_bytes  # never a byte more
    assert 0.92 * H100.total_bytes - b.utilization * H200.total_bytes < 0.02 * gpus.GiB
    assert "H100" in b.line() and "72.85 GiB" in b.line() and "speed is this GPU's" in b.line()


def test_the_prediction_on_the_bigger_gpu_is_the_smaller_ones() -> None:
    shape = models.BUILTIN["meta-llama/llama-3.3-70b-instruct"]
    s = memory.Settings(dtype_bytes=2, kv_bytes=2, quantization=None, gpu_memory_utilization=0.92,
                        max_model_len=16384, max_num_seqs=16, max_num_batched_tokens=4096,
                        enforce_eager=False, tensor_parallel_size=2)  # fmt: skip
    on_h100 = memory.fit(shape, s, H100.total_bytes).kv_cache_tokens
    held = dataclasses.replace(s, gpu_memory_utilization=held_to("H100", 0.92, H200).utilization)
    on_h200 = memory.fit(shape, held, H200.total_bytes).kv_cache_tokens
    assert on_h200 <= on_h100 and on_h100 - on_h200 <= 128  # ~20 MiB of rounding, 8 blocks


def test_the_smaller_gpus_batch_defaults_come_with_its_budget() -> None:
    b = held_to("T4", None, H100)  # a profile that leaves utilization to vLLM: 0.9
    assert b.profile_utilization == 0.9 and b.utilization == pytest.approx(
        0.9 * 14.75 / 79.18, abs=1e-4
    )
    assert (b.max_num_batched_tokens, b.max_num_seqs) == (2048, 256)  # vLLM's for a 16 GB card
    assert (held_to("A100-80", 0.9, H200).max_num_batched_tokens) == 2048  # vLLM's A100 rule


@pytest.mark.parametrize(
    ("name", "says"),
    [("B300", "--as-gpu B300: unknown GPU; known: "),
     ("H200", "--as-gpu H200: the NVIDIA H200 (139.80 GiB) is not smaller than this NVIDIA H100")],
)  # fmt: skip
def test_a_target_that_cannot_be_held_to_is_refused_in_one_line(name: str, says: str) -> None:
    with pytest.raises(ProfileError) as refused:
        held_to(name, 0.9, H100)
    assert refused.value.message.startswith(says) and "\n" not in refused.value.message


@pytest.mark.skipif(gpus.detect().count > 0, reason="this host has a GPU")
def test_without_a_gpu_here_it_says_so_and_starts_nothing() -> None:
    done = subprocess.run([*SERVE, "rehearse", "-p", "h100", "--as-gpu", "L4"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert (
        done.stderr.strip()
        == "serve: error: rehearse: --as-gpu L4 needs a GPU on this host; none seen"
    )
