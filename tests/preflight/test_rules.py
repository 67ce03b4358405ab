"""Every preflight rule, on plain facts (NVML faked only at its boundary in test_preflight_gpus)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from openai_server import loader
from openai_server.preflight import flags, gpus, memory, models, rules
from openai_server.preflight.gpus import GiB
from openai_server.preflight.rules import Facts, evaluate

FLAGS_032 = flags.shipped("0.32.0")
PHI3 = models.BUILTIN["microsoft/phi-3-mini-4k-instruct"]


def profile(text: str, *sets: str):
    return loader.load_text(text, "<test>", sets=list(sets)).profile


BASE = "model: microsoft/Phi-3-mini-4k-instruct\nmax_model_len: 4096\n"


def facts(prof, hardware=None, shape=PHI3, port_free=None, flagset=FLAGS_032, cpu_vllm=False):
    from openai_server import render

    return Facts(
        profile=prof,
        argv=render.engine_args(prof),
        flagset=flagset,
        hardware=hardware or gpus.planned("H100"),
        shape=shape,
        port_free=port_free,
        cpu_vllm=cpu_vllm,
    )


def statuses(report):
    return {c.name: c.status for c in report.checks}


def refused_reasons(report):
    return " | ".join(f"{c.reason} -> {c.fix}" for c in report.checks if c.status == "refused")


def test_a_plain_profile_passes_on_h100():
    report = evaluate(facts(profile(BASE)))
    assert not report.refused, refused_reasons(report)


def test_bf16_on_compute_capability_7_5_is_refused_with_half_as_fix():
    report = evaluate(facts(profile(BASE + "dtype: bfloat16\n"), gpus.planned("T4")))
    assert statuses(report)["dtype"] == "refused"
    assert "half" in refused_reasons(report)


def test_dtype_auto_on_t4_warns_that_vllm_casts_to_fp16():
    report = evaluate(facts(profile(BASE), gpus.planned("T4")))
    assert statuses(report)["dtype"] == "warning"


def test_fp8_quantization_refused_below_ampere_and_warned_on_ampere():
    prof = profile(BASE + "quantization: fp8\n")
    assert statuses(evaluate(facts(prof, gpus.planned("T4"))))["FP8"] == "refused"
    assert statuses(evaluate(facts(prof, gpus.planned("A100-80"))))["FP8"] == "warning"
    assert statuses(evaluate(facts(prof, gpus.planned("L4"))))["FP8"] == "ok"


def test_fp8_kv_cache_needs_compute_capability_8_9():
    prof = profile(BASE + "kv_cache_dtype: fp8\n")
    assert statuses(evaluate(facts(prof, gpus.planned("A100-80"))))["FP8"] == "refused"
    assert statuses(evaluate(facts(prof, gpus.planned("H100"))))["FP8"] == "ok"


def test_more_parallel_ranks_than_gpus_is_refused():
    prof = profile(BASE + "tensor_parallel_size: 2\npipeline_parallel_size: 2\n")
    report = evaluate(facts(prof, gpus.planned("H100:2")))
    assert statuses(report)["GPU count"] == "refused"
    assert "4 > 2" in refused_reasons(report)


def test_heads_not_divisible_by_tensor_parallel_size_is_refused():
    prof = profile(BASE + "tensor_parallel_size: 3\n")
    report = evaluate(facts(prof, gpus.planned("H100:4")))
    assert statuses(report)["attention heads"] == "refused"
    assert "[1, 2, 4]" in refused_reasons(report)


def test_busy_port_is_refused_and_unchecked_when_planning():
    assert statuses(evaluate(facts(profile(BASE), port_free=False)))["port"] == "refused"
    assert statuses(evaluate(facts(profile(BASE), port_free=None)))["port"] == "ok"


def test_free_memory_below_utilization_names_orphaned_vllm_engines():
    total = int(79.18 * GiB)
    orphan = gpus.GpuProcess(4242, 60 * GiB, "VLLM::EngineCore")
    gpu = gpus.Gpu("NVIDIA H100 80GB HBM3", total, (9, 0), free_bytes=19 * GiB, processes=(orphan,))
    report = evaluate(facts(profile(BASE), gpus.Hardware((gpu,), "NVML")))
    assert statuses(report)["free GPU memory"] == "refused"
    text = refused_reasons(report)
    assert "pid 4242" in text and "orphaned vLLM" in text and "kill 4242" in text


def test_free_memory_held_by_other_processes_suggests_a_utilization():
    total = int(79.18 * GiB)
    other = gpus.GpuProcess(7, 30 * GiB, "python train.py")
    gpu = gpus.Gpu("NVIDIA H100 80GB HBM3", total, (9, 0), free_bytes=49 * GiB, processes=(other,))
    report = evaluate(
        facts(profile(BASE + "gpu_memory_utilization: 0.9\n"), gpus.Hardware((gpu,), "NVML"))
    )
    text = refused_reasons(report)
    assert "gpu_memory_utilization <= 0.61" in text and "orphaned" not in text


def test_max_model_len_that_does_not_fit_is_refused_with_the_largest_that_fits():
    shape = models.BUILTIN["microsoft/phi-3-mini-128k-instruct"]
    prof = profile(
        "model: microsoft/Phi-3-mini-128k-instruct\ndtype: half\nmax_model_len: 131072\n"
    )
    report = evaluate(facts(prof, gpus.planned("T4"), shape=shape))
    assert statuses(report)["memory fit"] == "refused"
    assert (
        report.suggested_max_model_len is not None and 8192 < report.suggested_max_model_len < 20000
    )
    assert f"max_model_len <= {report.suggested_max_model_len}" in refused_reasons(report)
    assert report.fit is not None and report.settings is not None
    # the suggestion keeps SUGGESTION_MARGIN_BYTES spare (a followed suggestion must start)
    safe = replace(report.settings, overhead_bytes=rules.SUGGESTION_MARGIN_BYTES)
    gpu_bytes = report.fit.total_bytes
    assert report.suggested_max_model_len == memory.largest_max_model_len(
        memory.fit(shape, safe, gpu_bytes)
    )
    assert report.suggested_max_model_len < (memory.largest_max_model_len(report.fit) or 0)


def test_a_calibration_of_this_host_is_used_and_said() -> None:
    from openai_server.preflight.calibration import Calibration, Key

    prof = profile(BASE + "dtype: half\n")
    hw = gpus.planned("T4")
    plain = evaluate(facts(prof, hw))
    key = Key(hw.gpus[0].name, "0.26.0", "Phi3ForCausalLM", 1, 1, False)
    measured = Calibration(key, GiB // 4, "2026-11-27", 3)
    calibrated = evaluate(replace(facts(prof, hw), calibration=measured))
    assert plain.fit is not None and calibrated.fit is not None
    assert plain.fit.available_kv_bytes - calibrated.fit.available_kv_bytes == GiB // 4
    ok = next(c.reason for c in calibrated.checks if c.name == "memory fit")
    assert "calibrated on this host, 2026-11-27" in ok


def test_no_max_model_len_is_suggested_when_not_one_kv_block_fits():
    # the weights fit in half a T4, the rest of vLLM's overheads do not leave one block
    prof = profile(BASE + "dtype: half\ngpu_memory_utilization: 0.5\n")
    report = evaluate(facts(prof, gpus.planned("T4")))
    assert statuses(report)["weights"] == "ok" and statuses(report)["memory fit"] == "refused"
    assert report.fit is not None and report.fit.kv_cache_tokens == 0
    assert report.suggested_max_model_len is None
    assert report.suggested_gpu_memory_utilization is not None
    fix = next(c.fix for c in report.checks if c.name == "memory fit")
    assert fix == f"set gpu_memory_utilization: {report.suggested_gpu_memory_utilization}"


def test_max_model_len_beyond_the_models_positions_is_refused():
    report = evaluate(facts(profile(BASE, "max_model_len=8192")))
    assert statuses(report)["max_model_len"] == "refused"


def test_weights_larger_than_the_budget_are_refused():
    shape = models.BUILTIN["meta-llama/llama-3.1-70b-instruct"]
    prof = profile("model: meta-llama/Llama-3.1-70B-Instruct\nmax_model_len: 4096\n")
    assert statuses(evaluate(facts(prof, shape=shape)))["weights"] == "refused"


def test_weights_over_a_low_utilization_suggest_the_utilization_that_fits():
    # Phi-3-mini (7.1 GiB) at 0.05 of an H100: a higher utilization fixes it, not a bigger GPU
    report = evaluate(facts(profile(BASE, "gpu_memory_utilization=0.05")))
    assert statuses(report)["weights"] == "refused"
    util = report.suggested_gpu_memory_utilization
    assert util is not None and 0.1 < util < 0.2
    fix = next(c.fix for c in report.checks if c.name == "weights")
    assert fix.startswith(f"set gpu_memory_utilization: {util}, or use more GPUs")
    followed = evaluate(facts(profile(BASE, f"gpu_memory_utilization={util}")))
    assert not refused_reasons(followed)


def test_too_many_sequences_for_the_cache_is_a_warning_not_a_refusal():
    prof = profile(BASE + "dtype: half\nmax_num_seqs: 64\ngpu_memory_utilization: 0.85\n")
    report = evaluate(facts(prof, gpus.planned("T4")))
    assert statuses(report)["concurrency"] == "warning" and not report.refused


def test_unknown_flag_is_refused_naming_the_profile_key_and_the_rename():
    prof = profile(BASE + "extra_args: ['--disable-log-requests']\n")
    report = evaluate(facts(prof))
    text = refused_reasons(report)
    assert "extra_args" in text and "--enable-log-requests" in text


def test_flag_missing_in_older_vllm_is_refused_naming_its_key():
    prof = profile(BASE + "shutdown_timeout: 30\n")
    fake_026 = flags.FlagSet(
        "vllm",
        "0.26.0",
        {k: v for k, v in FLAGS_032.flags.items() if k != "--shutdown-timeout"},
        "test",
    )
    report = evaluate(facts(prof, flagset=fake_026))
    assert "shutdown_timeout: --shutdown-timeout is not a flag of vllm 0.26.0" in refused_reasons(
        report
    )


def test_cpu_host_with_cpu_vllm_skips_gpu_rules_and_is_never_refused():
    prof = loader.load("tiny-cpu", environ={}).profile
    report = evaluate(
        facts(prof, gpus.Hardware((), "none"), shape=models.tiny_shape(), cpu_vllm=True)
    )
    assert not report.refused
    assert statuses(report)["GPU"] == "ok" and "skipped: no GPU" in report.checks[1].reason


def test_no_gpu_and_no_cpu_vllm_is_a_warning():
    report = evaluate(facts(profile(BASE), gpus.Hardware((), "none")))
    assert statuses(report)["GPU"] == "warning" and not report.refused


def test_unknown_model_shape_warns_instead_of_guessing():
    report = evaluate(facts(profile("model: someone/unknown-model\n"), shape=None))
    assert statuses(report)["memory fit"] == "warning"


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("phi3-t4", "T4"),
        ("l4", "L4"),
        ("a10g", "A10G"),
        ("a100", "A100-80"),
        ("h100", "H100"),
        ("h100-tp2", "H100:2"),
    ],
)
def test_every_builtin_gpu_profile_passes_its_own_check_on_its_gpu(name, gpu):
    prof = loader.load(name, environ={}).profile
    report = evaluate(facts(prof, gpus.planned(gpu), shape=models.find(prof.model)))
    assert not report.refused, refused_reasons(report)
    assert report.fit is not None and report.fit.kv_cache_tokens >= report.settings.max_model_len
