"""The GPU suite: built-in profiles rehearsed on this host's GPUs with dummy weights.

Run on a GPU host (docs/preflight-and-rehearsal.md): `pytest -m gpu tests/gpu -s`. Without an NVIDIA GPU every
test here skips, so CI (no GPU) collects and skips them. Each result is printed as one JSON line
and, when GPU_RESULTS_DIR names a directory, written there, so that a run's figures can be put
in docs/measurements.md as measured.

What is asserted, per profile that fits this host (as written, or with the max_model_len that
`serve check` suggests where only the context is too long for this GPU: a memory override, said
in the output): vLLM's KV cache is within 1% of `serve check`'s prediction and not below it (the
prediction must never promise more than vLLM gives); the start reaches ready (the launcher's
readiness: /v1/models lists the model); SIGTERM ends it with 143 and the GPU memory returns to
its level before the start. Held-out shapes and settings (no built-in profile has them) check the
same bound where the memory model was not fitted.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openai_server.preflight import commands, gpus, memory

SERVE = [sys.executable, "-m", "openai_server"]
HARDWARE = gpus.detect()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(HARDWARE.count == 0, reason="no NVIDIA GPU on this host"),
]
MiB = 1024 * 1024
GiB = 1024 * MiB


def used_bytes() -> int:
    return sum(g.total_bytes - (g.free_bytes or 0) for g in gpus.detect().gpus)


def record(name: str, data: dict[str, Any]) -> None:
    print(json.dumps({"result": name, "gpu": HARDWARE.gpus[0].name if HARDWARE.gpus else None,
                      **data}))  # fmt: skip
    if out := os.environ.get("GPU_RESULTS_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(data, indent=2))


def rehearse(profile: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([*SERVE, "rehearse", "-p", profile, "--json", *args],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@functools.cache  # judged once: parametrize and every test ask
def fitting_here() -> dict[str, list[str]]:
    """Built-in GPU profiles this host can run -> the --set overrides they need (memory only)."""
    if HARDWARE.count == 0:
        return {}
    out: dict[str, list[str]] = {}
    for f in commands.profiles_for_host(hardware=HARDWARE):
        if f.name.startswith("tiny") or f.verdict == "incompatible":
            continue
        out[f.name] = [] if f.verdict == "runnable" else [f"max_model_len={f.fits_max_model_len}"]
    return out


def runnable_here() -> list[str]:
    return [name for name, sets in fitting_here().items() if not sets]


# A start that loads its graphs from vLLM's compile cache skips the compile's transient peak:
# with tensor parallel 2 (Llama-3.3-70B shape, two H200s) it got 0.58 GiB per GPU more KV cache
# than the compiling start the model predicts (one GPU: 0.05 GiB, inside the margin).
COMPILE_PEAK_GIB = 0.6


def within_bound(name: str, out: dict[str, Any]) -> None:
    """Ready, stopped with 143, and the prediction never above vLLM's KV and within 1% of it (on
    an 80 GB card's 40-60 GiB caches), or within the quarter GiB the model keeps for what it
    cannot see plus 1/8 GiB, where the cache is too small for 1% to hold that (memory.py)."""
    (start,) = out["starts"]
    assert start["exit_code"] == 143 and start["seconds_to_ready"] > 0
    err = out["kv_error_percent"]
    unseen = memory.UNSEEN_BYTES / GiB + 0.125
    if start.get("compiled") is False and (out["predicted"].get("gpus_per_replica") or 1) > 1:
        unseen += COMPILE_PEAK_GIB
        print(f"{name}: graphs from vLLM's compile cache: {COMPILE_PEAK_GIB} GiB more allowed")
    slack = max(1.0, 100 * unseen / start["kv_cache_gib"])
    assert -slack <= err <= 0.0, f"{name}: predicted {err:+.2f}% vs vLLM (allowed -{slack:.2f}%)"


@pytest.mark.parametrize("name", list(fitting_here()) or ["(none)"])
def test_builtin_profile_rehearses_within_one_percent(name: str) -> None:
    sets = fitting_here().get(name)
    if sets is None:
        pytest.skip("no GPU profile fits this host")
    if sets:  # said in the output: these figures are not the profile as written
        print(f"{name}: does not fit this GPU as written; rehearsed with --set {' '.join(sets)}")
    before = used_bytes()
    out = rehearse(name, "--no-bench", *(a for s in sets for a in ("--set", s)))
    record(f"rehearse-{name}", {"overrides": sets, **out})
    within_bound(name, out)
    assert used_bytes() - before < 512 * MiB  # the stop gave the GPU memory back


# Shapes and settings that no built-in profile has, on a GPU of 80 GB or more: other
# architectures (Mistral, Gemma 2 with its sliding-window layers and 256-wide heads) and a large
# model at high utilization, where the KV cache is a small remainder.
HELD_OUT = {
    "mistral-7b-u062": ("mistralai/Mistral-7B-Instruct-v0.3", 0.62, 32768, "bfloat16"),
    "gemma2-9b-u080": ("google/gemma-2-9b-it", 0.80, 8192, "bfloat16"),
    "qwen25-32b-u095": ("Qwen/Qwen2.5-32B-Instruct", 0.95, 16384, "bfloat16"),
}


@pytest.mark.parametrize("case", list(HELD_OUT))
def test_held_out_shape_within_one_percent(case: str, tmp_path: Path) -> None:
    if HARDWARE.gpus[0].total_bytes < 75 * 2**30:
        pytest.skip("the held-out settings are sized for a GPU of 80 GB or more")
    model, util, mml, dtype = HELD_OUT[case]
    prof = tmp_path / f"{case}.yaml"
    prof.write_text(f"model: {model}\ndtype: {dtype}\ngpu_memory_utilization: {util}\n"
                    f"max_model_len: {mml}\n")  # fmt: skip
    out = rehearse(str(prof), "--no-bench")
    record(f"held-out-{case}", out)
    within_bound(case, out)


# The model families whose memory is not a dense, full-attention one (issue: fit every family):
# real config.json files (tests/fixtures/models), rehearsed with dummy weights. Settings are
# vLLM's defaults on the GPU where a case sets none; two cases per mixture-of-experts family,
# because its activation peak grows with max_num_batched_tokens.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3-moe-u090": ("qwen3-30b-a3b", {"gpu_memory_utilization": 0.90, "max_model_len": 32768}),
    "gpt-oss-mxfp4-u090": ("gpt-oss-20b", {"gpu_memory_utilization": 0.90,
                                           "max_model_len": 32768}),
    "deepseek-mla-u090": ("deepseek-v2-lite", {"gpu_memory_utilization": 0.90,
                                               "max_model_len": 32768}),
    "gemma3-swa-u090": ("gemma-3-12b", {"gpu_memory_utilization": 0.90, "max_model_len": 32768}),
    "qwen3-moe-b2048": ("qwen3-30b-a3b", {"gpu_memory_utilization": 0.80, "max_model_len": 8192,
                                          "max_num_batched_tokens": 2048, "max_num_seqs": 128}),
    "gpt-oss-mxfp4-b2048": ("gpt-oss-20b", {"gpu_memory_utilization": 0.60,
                                            "max_model_len": 131072,
                                            "max_num_batched_tokens": 2048}),
    "deepseek-mla-b16384": ("deepseek-v2-lite", {"gpu_memory_utilization": 0.70,
                                                 "max_model_len": 16384,
                                                 "max_num_batched_tokens": 16384}),
    "gemma3-swa-b2048": ("gemma-3-12b", {"gpu_memory_utilization": 0.50, "max_model_len": 8192,
                                         "max_num_batched_tokens": 2048}),
    # held back from the refit of the MoE forward and the sampler (2026-12-03): a large forward
    # on the V1 runner, a small one on the V2 runner
    "qwen3-moe-b16384": ("qwen3-30b-a3b", {"gpu_memory_utilization": 0.85,
                                           "max_model_len": 16384,
                                           "max_num_batched_tokens": 16384, "max_num_seqs": 256}),
    "deepseek-mla-b4096": ("deepseek-v2-lite", {"gpu_memory_utilization": 0.80,
                                                "max_model_len": 8192,
                                                "max_num_batched_tokens": 4096,
                                                "max_num_seqs": 256}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAMILIES))
def test_model_family_within_one_percent(case: str, tmp_path: Path) -> None:
    """KV tokens within 1% of vLLM's and never above, vLLM's maximum concurrency likewise, and
    the weights within 2% of vLLM's "Model loading took"."""
    if HARDWARE.gpus[0].total_bytes < 130 * 2**30:
        pytest.skip("the family settings are sized for a GPU of 141 GB (H200)")
    folder, settings = FAMILIES[case]
    prof = tmp_path / f"{case}.yaml"
    lines = [f"model: {FIXTURES / folder}", "dtype: bfloat16"]
    prof.write_text("\n".join(lines + [f"{k}: {v}" for k, v in settings.items()]) + "\n")
    done = subprocess.run([*SERVE, "rehearse", "-p", str(prof), "--json", "--no-bench",
                           "--no-calibrate"], capture_output=True, text=True, timeout=1800)  # fmt: skip
    out = json.loads(done.stdout[: done.stdout.rindex("}") + 1]) if "{" in done.stdout else {}
    record(f"family-{case}", out or {"stdout": done.stdout[-4000:], "stderr": done.stderr[-4000:]})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    within_bound(case, out)
    (start,) = out["starts"]
    weights = out["predicted"]["breakdown_gib"]["weights"]
    assert weights == pytest.approx(start["weights_gib"], rel=0.02)
    assert out["predicted"]["max_concurrency"] <= start["max_concurrency"] * 1.0001


def test_a_suggestion_at_low_utilization_starts_when_followed() -> None:
    """The margin case: a KV cache under 2 GiB, where an overhead a fraction of a GiB off decides
    whether a start works. `serve check` refuses the full context and suggests a max_model_len;
    followed, it must start."""
    if "h100" not in runnable_here():
        pytest.skip("needs the h100 profile to fit this GPU")
    # ~1.5 GiB of KV: 15 GiB of weights and ~1.35 GiB of vLLM's overheads (0.23 on an H100,
    # 0.13 on an H200)
    total_gib = HARDWARE.gpus[0].total_bytes / 2**30
    low = f"gpu_memory_utilization={(15.0 + 1.35 + 1.5) / total_gib:.2f}"
    check = subprocess.run([*SERVE, "check", "-p", "h100", "--set", low, "--json"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    report = json.loads(check.stdout[: check.stdout.rindex("}") + 1])
    suggested = report["suggested_max_model_len"]
    assert check.returncode == 4 and suggested, check.stdout[-2000:]
    out = rehearse("h100", "--set", low, "--set", f"max_model_len={suggested}", "--no-bench")
    record("margin-h100", {"setting": low, "suggested_max_model_len": suggested, **out})
    (start,) = out["starts"]
    assert start["exit_code"] == 143 and start["kv_cache_gib"] < 2.0
    assert start["kv_cache_tokens"] >= suggested


def test_fp8_against_its_bf16_twin() -> None:
    """h100-fp8 (weights quantized to FP8 at load) beside h100 (bf16) on this GPU: decode time
    per token at one stream and output tokens/s at 64 concurrent, as ratios (printed; the
    reference on an H200 was 1.29x and 1.15x for a Phi-3-mini shape)."""
    names = runnable_here()
    if "h100" not in names or "h100-fp8" not in names:
        pytest.skip("needs h100 and h100-fp8 to fit this GPU")
    bf16, fp8 = (
        rehearse("h100", "--bench-prompts", "64"),
        rehearse("h100-fp8", "--bench-prompts", "64"),
    )
    one = (
        bf16["bench"]["concurrency_1"]["mean_tpot_ms"]
        / fp8["bench"]["concurrency_1"]["mean_tpot_ms"]
    )
    many = (fp8["bench"]["concurrency_64"]["output_tokens_per_s"]
            / bf16["bench"]["concurrency_64"]["output_tokens_per_s"])  # fmt: skip
    record("fp8-vs-bf16", {"tpot_speedup_1_stream": round(one, 3),
                           "throughput_ratio_64": round(many, 3), "bf16": bf16, "fp8": fp8})  # fmt: skip
    within_bound("h100", bf16)
    within_bound("h100-fp8", fp8)
    assert fp8["starts"][0]["kv_cache_tokens"] > bf16["starts"][0]["kv_cache_tokens"]


def test_h100_tp2_at_an_h100s_budget_on_bigger_gpus() -> None:
    """h100-tp2 where the GPUs are bigger than an H100 (two H200s): held to the KV-cache budget it
    has on two H100s (`--as-gpu H100`), the case where ~5 GiB per GPU decides whether it starts."""
    h100 = gpus.planned("H100").gpus[0].total_bytes
    if HARDWARE.count < 2 or HARDWARE.gpus[0].total_bytes <= h100:
        pytest.skip("needs two GPUs bigger than an H100")
    out = rehearse("h100-tp2", "--as-gpu", "H100", "--no-bench")
    record("rehearse-h100-tp2-as-h100", out)
    assert out["as_gpu"]["budget_gib"] == pytest.approx(72.85, abs=0.01)
    within_bound("h100-tp2 at an H100's budget", out)
