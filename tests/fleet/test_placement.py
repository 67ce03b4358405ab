"""Engines loaded on one GPU must fit on it together: vLLM takes gpu_memory_utilization of every GPU
it uses. Each model must fit alone and the pinned ones together; the others swap, and `victims`
picks whom to swap out. Pure: the fleet's profiles, a GPU count, states and times."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_server.errors import RefusedError
from openai_server.fleet.placement import Slot, check_fleet, check_shares, victims
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
    assert line.startswith("fleet.yaml: GPU 0 is asked for 1.80 of its memory by models that must "
                           "be loaded together (m0 0.90 + m1 0.90")  # fmt: skip
    assert "env: CUDA_VISIBLE_DEVICES" in line and "at most 0.95" in line


def test_models_that_do_not_fit_together_swap_unless_pinned(tmp_path: Path) -> None:
    check_fleet(members(tmp_path, "", ""), 1, "fleet.yaml")  # they swap: no refusal
    (tmp_path / "gpu.yaml").write_text("model: org/m\n")
    (tmp_path / "fleet.yaml").write_text("models:\n  a: {profile: gpu.yaml, pin: true}\n"
                                         "  b: {profile: gpu.yaml, pin: true}\n")  # fmt: skip
    with pytest.raises(RefusedError, match=r"GPU 0 is asked for 1.80 .* pin fewer"):
        check_fleet(load_fleet(tmp_path / "fleet.yaml").members, 1, "fleet.yaml")


def test_one_model_over_a_whole_gpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match=r"GPU 0 is asked for 0.97 .*\(m0 0.97;"):
        check_fleet(members(tmp_path, "gpu_memory_utilization: 0.97"), 1, "fleet.yaml")


def slot(name: str, state: str = "awake", share: float = 0.6, gpus: tuple[int, ...] = (0,),
         used: float = 0.0, evictable: bool = True, sleeps: bool = True) -> Slot:  # fmt: skip
    return Slot(name, gpus, share, state, evictable, used, sleeps)


KEEP = {0: 2 / 141, 1: 2 / 141}  # an H200's 141 GiB, 2 GiB kept by an engine asleep


def test_a_model_that_fits_beside_the_others_evicts_none() -> None:
    assert victims("b", [slot("a", share=0.4), slot("b", "off", 0.5)], KEEP, None) == []
    # one asleep holds only its keep: 0.6 + 0.014 + 0.3 fits
    assert victims("c", [slot("a"), slot("b", "asleep"), slot("c", "off", 0.3)], KEEP, None) == []


def test_the_least_recently_used_is_swapped_out_and_no_more() -> None:
    slots = [slot("a", used=5.0, share=0.3), slot("b", used=1.0, share=0.3),
             slot("c", used=9.0, share=0.3), slot("d", "off", 0.3)]  # fmt: skip
    assert victims("d", slots, KEEP, None) == ["b"]
    assert victims("d", slots, KEEP, 2) == ["b", "a"]  # max_resident: room for one more


def test_only_models_on_the_targets_gpus_are_swapped_out() -> None:
    slots = [slot("a", used=0.0, gpus=(1,)), slot("b", used=9.0), slot("c", "off")]
    assert victims("c", slots, KEEP, None) == ["b"]


def test_pinned_young_or_loading_models_are_waited_for_not_swapped_out() -> None:
    assert victims("b", [slot("a", evictable=False), slot("b", "off")], KEEP, None) is None
    assert victims("b", [slot("a", evictable=False), slot("b", "off")], KEEP, 1) is None


def test_waking_needs_the_share_beside_the_others_keep() -> None:
    # b asleep wants 0.6 back; a awake 0.6: a must go (asleep it keeps 2 GiB, 0.014)
    assert victims("b", [slot("a"), slot("b", "asleep")], KEEP, None) == ["a"]
    # on CPU (no GPUs): only max_resident decides
    cpu = [slot("a", gpus=(), sleeps=False), slot("b", "off", gpus=(), sleeps=False)]
    assert victims("b", cpu, {}, None) == []
    assert victims("b", cpu, {}, 1) == ["a"]


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
    with pytest.raises(RefusedError, match=r"GPU 1 is asked for 1.20 of its memory .* \(m0 0.60"):
        check_shares(both, 2, "fleet.yaml")


def test_models_sleep_while_host_memory_holds_their_weights_else_they_stop(tmp_path: Path) -> None:
    from openai_server.fleet.placement import sleepers
    from openai_server.preflight.gpus import Hardware, planned

    (tmp_path / "gpu.yaml").write_text("model: org/m\n")
    (tmp_path / "fleet.yaml").write_text(
        "models:\n  a: {profile: gpu.yaml}\n  b: {profile: gpu.yaml}\n  c: {profile: gpu.yaml}\n"
        "  d: {profile: gpu.yaml, sleep: false}\n"
    )
    ms = load_fleet(tmp_path / "fleet.yaml").members
    gib = 2**30
    weights: dict[str, int | None] = {"a": 16 * gib, "b": 60 * gib, "c": None}
    got = sleepers(ms, planned("H200"), weights, 100 * gib)  # 80 GiB for sleeping weights
    assert got == {"a": True, "b": True, "c": True, "d": False}
    weights["b"] = 70 * gib  # a's 16 + b's 70 > 80: b stops; c (unknown) still sleeps
    assert sleepers(ms, planned("H200"), weights, 100 * gib)["b"] is False
    assert not any(sleepers(ms, Hardware((), "none"), weights, 100 * gib).values())  # CPU


def test_a_models_weights_on_the_host_come_from_the_memory_model(tmp_path: Path) -> None:
    from openai_server.fleet.placement import weights_on_host
    from openai_server.preflight.gpus import planned

    (tmp_path / "fleet.yaml").write_text(
        "models:\n  a: {profile: h100}\n  b: {profile: h100-tp2}\n  c: {profile: tiny-cpu}\n"
    )
    a, b, c = load_fleet(tmp_path / "fleet.yaml").members
    one = weights_on_host(a, planned("H100"))
    assert one is not None and 14.5 * 2**30 < one < 16 * 2**30  # Llama-3.1-8B in bf16
    two = weights_on_host(b, planned("H100:2"))
    # Llama-3.3-70B over two GPUs: both halves go to the host, 141 GB
    assert two is not None and 125 * 2**30 < two < 140 * 2**30
    assert weights_on_host(c, planned("H100")) is not None
