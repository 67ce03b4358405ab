"""A fleet's swap on one GPU: two 8B-class models that do not fit together (each at
gpu_memory_utilization 0.6), swapped by vLLM's sleep mode or by stop and start; and the router's
overhead against talking to the engine directly.

Run on a GPU host (vLLM installed; dummy weights, so nothing is downloaded):

    python benchmarks/fleet_swap.py --mode sleep --out DIR [--budget 480] [--overhead]
    python benchmarks/fleet_swap.py --mode stop --out DIR

What it measures, each as a client sees it (time from sending a one-token streamed completion
request to its first token):
- switch: the request is for the model that is not loaded, while the other one is (and must go
  first: to sleep, or stopped);
- idle wake (sleep mode): both models asleep after their ttl, the GPU memory free: a wake only;
- overhead: `serve bench` at 64 concurrent through the fleet's port and straight to the engine's,
  alternated (output tokens/s, mean TTFT), first, while only the first model is loaded.
Results go to DIR/fleet-MODE.json (written after each phase), with the fleet's log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PORT = 8100
TTL_S = 30  # a direct `serve bench` run (the fleet sees no request) must be shorter


def profile_text(base: str) -> str:
    """h100 (Llama-3.1-8B): its shape with dummy weights, 0.6 of the GPU each, so two do not fit
    together; anything else (tiny-cpu, to try this script on a CPU host) as it is."""
    if base != "h100":
        return f"extends: {base}\nenforce_eager: true\n"
    sys.path.insert(0, str(ROOT))
    from openai_server.loader import load
    from openai_server.rehearse import shape

    model = shape.build(load("h100").profile)[0]
    return (f"extends: h100\nmodel: {model}\nload_format: dummy\n"
            "gpu_memory_utilization: 0.6\nmax_model_len: 8192\n")  # fmt: skip


def write_fleet(work: Path, mode: str, profile: str) -> Path:
    for name in ("a", "b"):
        (work / f"{name}.yaml").write_text(profile)
    sleep = "true" if mode == "sleep" else "false"
    path = work / "fleet.yaml"
    path.write_text(
        f"port: {PORT}\nmin_residency: 0\nqueue_timeout: 900\nmax_resident: 1\nmodels:\n"
        f"  a: {{profile: a.yaml, sleep: {sleep}, ttl: {TTL_S}}}\n"
        f"  b: {{profile: b.yaml, sleep: {sleep}, ttl: {TTL_S}, preload: false}}\n"
    )
    return path


def first_token(name: str) -> float:
    """Seconds from sending a streamed one-token completion request to its first chunk (a shape
    from the table has a tokenizer but no chat template of its own: completions, as rehearse)."""
    body = {"model": name, "prompt": "hi", "max_tokens": 1, "stream": True}
    t0 = time.monotonic()
    with httpx.stream("POST", f"http://127.0.0.1:{PORT}/v1/completions", json=body,
                      timeout=900) as r:  # fmt: skip
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                return time.monotonic() - t0
    raise RuntimeError(f"{name}: no chunk")


def fleet_state() -> dict[str, Any]:
    models: dict[str, Any] = httpx.get(f"http://127.0.0.1:{PORT}/fleet", timeout=10).json()[
        "models"
    ]
    return models


def bench(url: str, model: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "openai_server", "bench", "--url", url, "--model", model,
           "--num-prompts", "256", "--max-concurrency", "64", "--random-input-len", "256",
           "--random-output-len", "256", "--endpoint", "completions", "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        return {"exit": done.returncode, "stderr": done.stderr[-500:]}
    got = json.loads(done.stdout)
    return {k: got[k] for k in ("output_throughput", "mean_ttft_ms", "median_ttft_ms")}


def percentile(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("sleep", "stop"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    ap.add_argument("--switches", type=int, default=8)
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--base", default="h100", help="the profile both models extend")
    args = ap.parse_args()
    t_end = time.monotonic() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / f"work-{args.mode}"
    work.mkdir(exist_ok=True)
    result: dict[str, Any] = {"mode": args.mode}
    report = args.out / f"fleet-{args.mode}.json"

    def save() -> None:
        report.write_text(json.dumps(result, indent=2) + "\n")

    fleet_file = write_fleet(work, args.mode, profile_text(args.base))
    log = (args.out / f"fleet-{args.mode}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "openai_server", "fleet", "--file",
                             str(fleet_file), "--no-check"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True)  # fmt: skip
    try:
        t0 = time.monotonic()
        while fleet_state_or_none() != "ready":
            if proc.poll() is not None:
                raise SystemExit(f"fleet exited {proc.returncode}")
            if time.monotonic() > t_end:
                raise SystemExit("a not ready within the budget")
            time.sleep(1)
        result["a_first_ready_s"] = round(time.monotonic() - t0, 1)
        if args.overhead and time.monotonic() + 90 < t_end:
            # first, while a is the one loaded: a direct run longer than the ttl would unload it
            engine = f"http://127.0.0.1:{fleet_state()['a']['port']}"
            # a run to warm the new engine first: on 2026-12-02 the first pair, without it, had
            # the fleet's run (the first traffic) 16% slower and the second pair 0.1%
            result["warm_up"] = bench(engine, "a")
            runs = []
            for _ in range(2):
                runs.append({"fleet": bench(f"http://127.0.0.1:{PORT}", "a"),
                             "direct": bench(engine, "a")})  # fmt: skip
                result["overhead_runs"] = runs
                save()
        result["b_first_load_s"] = round(first_token("b"), 2)  # a leaves, b starts (cold)
        save()
        switches: list[float] = []
        for i in range(args.switches):
            if time.monotonic() + (15 if args.mode == "sleep" else 150) > t_end:
                break
            switches.append(first_token("a" if i % 2 == 0 else "b"))
            result["switch_s"] = [round(x, 2) for x in switches]
            result["switch_p50_s"] = round(statistics.median(switches), 2)
            result["switch_p95_s"] = round(percentile(switches, 95), 2)
            save()
        if args.mode == "sleep" and time.monotonic() + TTL_S + 20 < t_end:
            deadline = time.monotonic() + TTL_S + 15
            while any(s["state"] != "asleep" for s in fleet_state().values()):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            result["idle_states"] = {n: s["state"] for n, s in fleet_state().items()}
            result["idle_wake_first_token_s"] = round(first_token("a"), 3)
            save()
        result["fleet"] = fleet_state()
        save()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        result["fleet_exit"] = proc.returncode
        save()
        print(json.dumps(result, indent=2))


def fleet_state_or_none() -> str | None:
    try:
        return str(fleet_state()["a"]["state"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


if __name__ == "__main__":
    main()
