"""`serve rehearse`: run a profile on this host with dummy weights and compare with the prediction.

Before a team downloads 140 GB of weights and books a node, it learns how the profile behaves on
this GPU with this vLLM: vLLM's real KV cache against `serve check`'s prediction, the time of each
start-up phase (cold, and warm with --twice), and the bench figures. On a GPU the measured
overhead is stored as a calibration (preflight/calibration.py) that `serve check` then uses.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import loader
from ..cli_common import ProfileOpt, SetOpt, profile_ref
from ..errors import RefusedError
from ..launch.options import Timing
from ..preflight import calibration, gpus, memory, models
from ..preflight.check import Target, gather
from ..preflight.gpus import GiB
from ..preflight.rules import Facts, Report, evaluate
from ..profile import Profile
from ..profile_values import names_a_path
from . import shape
from .budget import Budget, held_to
from .run import RehearsalFailed, Start, free_port, one_start

PROMPT_TOKENS = 128
OUTPUT_TOKENS = 128
MAX_CONCURRENCY = 64
# Settings bound to the model's own tokenizer, which a rehearsal does not have: parsers look up
# the model's special tokens (llama3_json: <|python_tag|>; a 500 at the first tool request) and a
# template may use them. They cost no memory and no time: off in a rehearsal, said in the report.
TOKENIZER_BOUND = {"enable_auto_tool_choice": None, "tool_call_parser": None,
                   "reasoning_parser": None, "chat_template": None}  # fmt: skip


def rehearsal_profile(profile: Profile, model_dir: Path, port: int) -> Profile:
    """The profile as it runs on the shape: same settings, dummy weights, the same served id."""
    return profile.model_copy(update={
        "model": str(model_dir), "load_format": "dummy", "served_model_name": served_name(profile),
        "tokenizer": None, "revision": None, "port": port, "restart": "never",
        **TOKENIZER_BOUND,
    })  # fmt: skip


def served_name(profile: Profile) -> str:
    """The id the rehearsal serves: the profile's, or a local directory's name (a path is not a
    model id vLLM's served_model_name takes)."""
    served = profile.model_id
    if names_a_path(served):
        served = Path(served).expanduser().resolve().name
    return served


def bench(base_url: str, model: str, api_key: str | None, prompts: int,
          concurrency: int, plain: bool = False) -> dict[str, Any]:  # fmt: skip
    """Output tokens/s, TTFT and TPOT at one stream and at `concurrency` (fixed lengths)."""
    from ..clients import bench as bench_mod
    from ..clients.endpoint import Endpoint

    cfg = bench_mod.BenchConfig(ep=Endpoint(base_url, api_key), model=model,
                                random_input_len=PROMPT_TOKENS, random_output_len=OUTPUT_TOKENS,
                                ignore_eos=True,
                                endpoint="completions" if plain else "chat")  # fmt: skip
    out = {}
    for level, n in ((1, max(2, prompts // 8)), (concurrency, prompts)):
        (r,) = bench_mod.run(replace(cfg, num_prompts=n, max_concurrency=level))
        out[f"concurrency_{level}"] = {
            "output_tokens_per_s": round(r["output_throughput"], 1),
            "mean_ttft_ms": round(r["mean_ttft_ms"], 1),
            "mean_tpot_ms": round(r["mean_tpot_ms"], 2),
            "completed": r["completed"],
        }
    return out


COMPILED = {True: " (compiled)", False: " (graphs from vLLM's compile cache)"}


def prediction(report: Report) -> dict[str, Any]:
    f = report.fit
    terms = {}
    if f:  # the model's split, to set beside vLLM's own where it logs one (run.breakdown)
        terms = {"weights": f.weights_bytes + f.lora_bytes, "activation": f.activation_bytes,
                 "non_torch": f.non_torch_bytes, "cuda_graphs": f.cuda_graph_bytes}  # fmt: skip
    s = report.settings
    return {
        "gpus_per_replica": s.tensor_parallel_size * s.pipeline_parallel_size if s else None,
        "fused_all_reduce": s.fused_all_reduce if s and s.tensor_parallel_size > 1 else None,
        "kv_cache_tokens": f.kv_cache_tokens if f else None,
        "max_concurrency": round(f.max_concurrency, 2) if f else None,
        "available_kv_gib": round(f.available_kv_bytes / GiB, 3) if f else None,
        "breakdown_gib": {k: round(v / GiB, 3) for k, v in terms.items()},
        "calibrated": next((c.reason for c in report.checks if "calibrated" in c.reason), ""),
    }


def cpu_prediction(prof: Profile, shape: models.Shape | None) -> dict[str, Any] | None:
    """vLLM's CPU KV cache, predicted where VLLM_CPU_KVCACHE_SPACE sizes it (GiB); None where
    vLLM sizes it from the memory free at start, which no prediction can know."""
    space = (prof.env or {}).get("VLLM_CPU_KVCACHE_SPACE") or os.environ.get(
        "VLLM_CPU_KVCACHE_SPACE"
    )
    if shape is None or not str(space or "").strip().isdigit():
        return None
    dtype = memory.BYTES_PER_ELEMENT.get(prof.dtype or "auto", 2)
    kv = prof.kv_cache_dtype or "auto"
    s = memory.Settings(
        dtype_bytes=dtype, kv_bytes=dtype if kv == "auto" else memory.BYTES_PER_ELEMENT[kv],
        quantization=prof.quantization, gpu_memory_utilization=1.0,
        max_model_len=prof.max_model_len or shape.max_positions,
        max_num_seqs=prof.max_num_seqs or 256, max_num_batched_tokens=prof.max_num_batched_tokens
        or 4096, enforce_eager=True, hybrid_kv_cache=False,
    )  # fmt: skip
    cap = memory.cpu_kv_cache(shape, s, int(str(space).strip()) * GiB)
    return {"kv_cache_tokens": cap.tokens, "max_concurrency": round(cap.max_concurrency, 2),
            "available_kv_gib": float(str(space).strip()), "device": "CPU"}  # fmt: skip


def rehearse_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    twice: Annotated[bool, typer.Option(help="start a second time: cold vs warm start")] = False,
    run_bench: Annotated[bool, typer.Option("--bench/--no-bench", help="run the bench")] = True,
    bench_prompts: Annotated[int, typer.Option(min=2, help="prompts at full concurrency")] = 64,
    calibrate: Annotated[
        bool, typer.Option(help="store the measured overhead for `serve check` (GPU only)")
    ] = True,
    ready_timeout: Annotated[float, typer.Option(help="seconds to ready")] = Timing().ready_timeout,
    as_gpu: Annotated[
        str | None,
        typer.Option(
            "--as-gpu",
            help="run with the KV-cache budget the profile has on this smaller GPU (H100, L4, "
            "T4...): its utilization scaled to this GPU",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="keep each start's log (launch-cold.log, launch-warm.log) here"
        ),
    ] = None,
) -> None:
    """Serve the profile's model shape with dummy weights; report KV, phases, bench; stop."""
    prof = loader.load(profile_ref(profile), sets=set_ or []).profile
    prof, hardware, budget = held_to_gpu(prof, as_gpu)
    facts = gather(prof, Target(check_port=False), hardware=hardware)
    report = evaluate(facts)
    if (refusal := report.refusal()) is not None:
        raise RefusedError(f"rehearse: {refusal}")
    model_dir, source = shape.build(prof)
    clients = Clients(prof, run_bench, bench_prompts, shape.completions_only(facts.shape))
    starts = run_starts(prof, model_dir, twice=twice, ready_timeout=ready_timeout, clients=clients,
                        name=profile_ref(profile), log_dir=log_dir)  # fmt: skip
    off = [k for k in TOKENIZER_BOUND if getattr(prof, k) is not None]
    out = {"profile": prof.model_id, "shape": source, "model_dir": str(model_dir),
           "off_in_rehearsal": off,
           "predicted": prediction(report) if report.fit else
           (cpu_prediction(prof, facts.shape) or prediction(report)),
           "starts": [s.as_json() for s in starts],
           **clients.results}  # fmt: skip
    if budget is not None:
        out["as_gpu"] = {"gpu": budget.target, "line": budget.line(),
                         "budget_gib": round(budget.budget_bytes / GiB, 2),
                         "utilization_here": budget.utilization}  # fmt: skip
    measured = starts[0].kv_cache_tokens
    predicted = out["predicted"]["kv_cache_tokens"]
    if measured and predicted:
        out["kv_error_percent"] = round((predicted - measured) / measured * 100, 2)
    if calibrate and (stored := store_calibration(facts, report, starts[0])):
        out["calibration"] = stored
    print(json.dumps(out, indent=2) if as_json else text_report(out), flush=True)
    if out.get("failure"):
        raise RehearsalFailed(f"rehearse: {out['failure']}")


def held_to_gpu(
    prof: Profile, as_gpu: str | None
) -> tuple[Profile, gpus.Hardware | None, Budget | None]:
    """`--as-gpu`: the profile with the smaller GPU's KV-cache budget and batch defaults."""
    if not as_gpu:
        return prof, None, None
    hardware = gpus.detect()
    if not hardware.gpus:
        raise RefusedError(f"rehearse: --as-gpu {as_gpu} needs a GPU on this host; none seen")
    budget = held_to(as_gpu, prof.gpu_memory_utilization, hardware.gpus[0])
    prof = prof.model_copy(update={
        "gpu_memory_utilization": budget.utilization,
        "max_num_batched_tokens": prof.max_num_batched_tokens or budget.max_num_batched_tokens,
        "max_num_seqs": prof.max_num_seqs or budget.max_num_seqs,
    })  # fmt: skip
    return prof, hardware, budget


class Clients:
    """What runs against a ready start: the smoke, then (cold start only) the bench. A failure
    does not lose what the start measured: it is kept, the report printed, then the command
    fails."""

    def __init__(self, prof: Profile, run_bench: bool, prompts: int, plain: bool) -> None:
        self.model = served_name(prof)
        self.api_key = os.environ.get(prof.api_key_env) if prof.api_key_env else None
        self.concurrency = min(prof.max_num_seqs or MAX_CONCURRENCY, MAX_CONCURRENCY)
        self.run_bench, self.prompts, self.plain = run_bench, prompts, plain
        self.results: dict[str, Any] = {}

    def during(self, url: str, cold: bool) -> None:
        from ..clients import smoke
        from ..clients.endpoint import Endpoint

        try:
            self.results["smoke"] = smoke.run(Endpoint(url, self.api_key), self.model, 120,
                                              completions=self.plain).line()  # fmt: skip
            if self.run_bench and cold:
                self.results["bench"] = bench(url, self.model, self.api_key, self.prompts,
                                              self.concurrency, self.plain)  # fmt: skip
        except Exception as e:  # any client failure: the report first, then the failure
            self.results["failure"] = str(e).splitlines()[0] if str(e) else type(e).__name__


def run_starts(
    prof: Profile, model_dir: Path, *, twice: bool, ready_timeout: float, clients: Clients,
    name: str, log_dir: Path | None = None,
) -> list[Start]:  # fmt: skip
    """One start (two with --twice: cold, then warm), each through the launcher; stops at the
    first failure, which `clients.results["failure"]` then holds. The logs stay in `log_dir`
    where one is given (what a start said, to read after: a cold start's silent minutes)."""
    from ..cache.record import record_quietly
    from ..deploy.compose import profile_yaml

    starts: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="serve-rehearse-") as tmp:
        workdir = log_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for cold in (True, False)[: 2 if twice else 1]:
            port = free_port()
            path = workdir / "profile.yaml"
            path.write_text(profile_yaml(rehearsal_profile(prof, model_dir, port)))
            url = f"http://127.0.0.1:{port}"
            since = time.time() - 2  # filesystem timestamps may be coarser than the clock
            start = one_start(path, workdir, cold=cold, ready_timeout=ready_timeout,
                              while_ready=partial(clients.during, url, cold))  # fmt: skip
            starts.append(start)
            if not start.failure and start.vllm_version:
                # for `serve cache pack`, under the profile's own digest: no start of its own
                record_quietly(name, prof.model_dump(mode="json"), start.vllm_version,
                               str(model_dir), since, "rehearse")  # fmt: skip
            if start.failure or "failure" in clients.results:
                clients.results.setdefault("failure", start.failure)
                break
    return starts


def store_calibration(facts: Facts, report: Report, start: Start) -> dict[str, Any] | None:
    """On a GPU: predicted minus measured KV memory per GPU, stored for `serve check`."""
    from ..settings import settings

    gpu = facts.hardware.gpus[0] if facts.hardware.gpus else None
    if not (gpu and facts.shape and report.settings and start.kv_cache_gib is not None):
        return None
    raw = memory.fit(facts.shape, replace(report.settings, overhead_bytes=0), gpu.total_bytes)
    overhead = raw.available_kv_bytes - int(start.kv_cache_gib * GiB)
    prof = facts.profile
    # the release the engine logged; the flag set's where the log had none
    version = start.vllm_version or (facts.flagset.version if facts.flagset else "?")
    key = calibration.Key(gpu.name, version, facts.shape.architecture,
                          prof.tensor_parallel_size or 1, prof.pipeline_parallel_size or 1,
                          bool(prof.enforce_eager), prof.quantization or "")  # fmt: skip
    today = datetime.date.today().isoformat()
    stored = calibration.record(settings().cache_root, key, overhead, today)
    return {"overhead_gib": round(overhead / GiB, 3),
            "stored_overhead_gib": round(stored.overhead_bytes / GiB, 3),
            "runs": stored.runs}  # fmt: skip


def text_report(out: dict[str, Any]) -> str:
    lines = [f"rehearsal of {out['profile']} ({out['shape']}, dummy weights)"]
    if "as_gpu" in out:
        lines.append(f"  {out['as_gpu']['line']}")
    if out["off_in_rehearsal"]:
        off = ", ".join(out["off_in_rehearsal"])
        lines.append(f"  off (they need the model's own tokenizer): {off}")
    pred, starts = out["predicted"], out["starts"]
    kv = starts[0]["kv_cache_tokens"]
    if pred["kv_cache_tokens"] is not None and kv is not None:
        err = out.get("kv_error_percent")
        note = f" {pred['calibrated']}" if pred.get("calibrated") else ""
        lines.append(f"  KV cache: predicted {pred['kv_cache_tokens']:,} tokens, vLLM {kv:,} "
                     f"({err:+.2f}%){note}")  # fmt: skip
    elif kv is not None:
        lines.append(f"  KV cache: vLLM {kv:,} tokens (no GPU prediction on this host)")
    theirs = starts[0].get("vllm_breakdown_gib") or {}
    if theirs and pred.get("breakdown_gib"):
        ours = pred["breakdown_gib"]
        split = ", ".join(f"{k.replace('_', '-')} {ours[k]:.2f}/{theirs[k]:.2f}" for k in theirs)
        unseen = memory.UNSEEN_BYTES / GiB
        lines.append(f"  before the KV cache, GiB per GPU (predicted/vLLM): {split} "
                     f"(predicted non-torch includes {unseen:.2f} unseen)")  # fmt: skip
    if starts[0].get("max_concurrency") is not None:
        theirs_c = starts[0]["max_concurrency"]
        lines.append(f"  maximum concurrency at max_model_len: predicted "
                     f"{pred.get('max_concurrency')}, vLLM {theirs_c}")  # fmt: skip
    for s in starts:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in s["phases"].items())
        how = COMPILED.get(s.get("compiled"), "")
        ready = s["seconds_to_ready"]
        ready_text = f"ready in {ready:.1f} s" if ready is not None else "not ready"
        lines.append(f"  {'cold' if s['cold'] else 'warm'} start{how}: {ready_text} "
                     f"({phases}); stop {s['stop_seconds']:.1f} s, "
                     f"exit {s['exit_code']}")  # fmt: skip
    if "smoke" in out:
        lines.append(f"  smoke: {out['smoke']}")
    for level, b in out.get("bench", {}).items():
        lines.append(f"  bench {level.replace('_', ' ')}: {b['output_tokens_per_s']} output "
                     f"tokens/s, TTFT {b['mean_ttft_ms']} ms, "
                     f"TPOT {b['mean_tpot_ms']} ms")  # fmt: skip
    if "calibration" in out:
        c = out["calibration"]
        lines.append(f"  calibration stored: overhead {c['overhead_gib']} GiB per GPU "
                     f"(kept: {c['stored_overhead_gib']} GiB over {c['runs']} run(s))")  # fmt: skip
    if out.get("failure"):
        lines.append(f"  FAILED: {out['failure']}")
    return "\n".join(lines)
