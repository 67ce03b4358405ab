"""Output tokens/s: our /generate-stream against vLLM's OpenAI server, same profile, same workload.

    .venv/bin/python benchmarks/custom_vs_openai.py --profile tiny-cpu --port 8450

Each server is started with `serve launch` (the product path), measured, and stopped before the
other starts: never both at once (they would share, and fight for, the same CPUs and memory).
Workload: N prompts at concurrency C, each streaming exactly T tokens (ignore_eos, greedy), so both
servers generate the same number of tokens; output tokens/s = tokens counted by the server / wall
time. The CPU machines are shared (other people's servers come and go), so a single measurement
means little: the servers are started in the order A B B A (`--order`, `--cycles`), each runs the
workload `--rounds` times after a warm-up, and the ratio compares medians (best rounds also shown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
Request = Callable[[httpx.AsyncClient, str], Awaitable[int]]


async def custom_request(client: httpx.AsyncClient, prompt: str, tokens: int) -> int:
    body = {"prompt": prompt, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.0}
    final: dict[str, int] = {}
    async with client.stream("POST", "/generate-stream", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"completion_tokens"' in line:
                final = json.loads(line[6:])
    return final["completion_tokens"]


async def openai_request(client: httpx.AsyncClient, prompt: str, tokens: int, model: str) -> int:
    body = {
        "model": model, "prompt": prompt, "max_tokens": tokens, "ignore_eos": True,
        "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    used = 0
    async with client.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"usage":{' in line.replace(" ", ""):
                usage = json.loads(line[6:]).get("usage") or {}
                used = usage.get("completion_tokens", used)
    return used


async def workload(
    base_url: str, send: Request, prompts: int, concurrency: int
) -> tuple[int, float]:
    """(output tokens, seconds) for `prompts` requests, at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> int:
        async with gate:
            return await send(client, f"Benchmark prompt number {i}: tell a long story.")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        await send(client, "warm up")
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(client, i) for i in range(prompts)))
        return sum(counts), time.perf_counter() - start


def start(server: str, args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready, log = tmp / f"ready-{server}", tmp / f"{server}.log"
    sets = [a for kv in args.set for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "openai_server", "launch", "--profile", args.profile,
           "--server", server, "--set", f"port={args.port}", *sets, "--ready-file", str(ready),
           "--log-format", "plain"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 600
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"{server} server did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, log


def api_process(launcher_log: Path) -> psutil.Process:
    """The API server process (not its engine): the launcher names it when it starts it."""
    found = re.findall(r"started the server \(pid (\d+)\)", launcher_log.read_text())
    return psutil.Process(int(found[-1]))


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def measure(server: str, args: argparse.Namespace, tmp: Path) -> list[tuple[float, float]]:
    """Per round: (output tokens/s, API-process CPU ms per 1000 output tokens)."""
    proc, log = start(server, args, tmp)
    base = f"http://127.0.0.1:{args.port}"
    try:
        api = api_process(log)
        model = httpx.get(base + "/v1/models").json()["data"][0]["id"]

        async def send(client: httpx.AsyncClient, prompt: str) -> int:
            if server == "custom":
                return await custom_request(client, prompt, args.tokens)
            return await openai_request(client, prompt, args.tokens, model)

        rounds = []
        for _ in range(args.rounds):
            cpu = cpu_seconds(api)
            tokens, seconds = asyncio.run(workload(base, send, args.prompts, args.concurrency))
            cpu_ms_per_1k = (cpu_seconds(api) - cpu) * 1e6 / tokens
            rounds.append((tokens / seconds, cpu_ms_per_1k))
            print(f"  {server}: {rounds[-1][0]:.1f} output tok/s, API process "
                  f"{cpu_ms_per_1k:.0f} CPU ms per 1000 tokens", flush=True)  # fmt: skip
        return rounds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny-cpu")
    p.add_argument("--port", type=int, default=8450)
    p.add_argument("--set", action="append", default=[], help="profile override KEY=VALUE")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--rounds", type=int, default=3, help="workload runs per server start")
    p.add_argument("--order", default="openai,custom,custom,openai", help="server start order")
    p.add_argument("--cycles", type=int, default=1, help="repeat the start order")
    args = p.parse_args()
    print(
        f"profile {args.profile}: {args.prompts} prompts, concurrency {args.concurrency}, "
        f"{args.tokens} output tokens each (ignore_eos), {args.rounds} rounds per start, "
        f"order {args.order} x {args.cycles}"
    )
    runs: dict[str, list[tuple[float, float]]] = {"openai": [], "custom": []}
    with tempfile.TemporaryDirectory() as tmp:
        for server in args.order.split(",") * args.cycles:
            runs[server] += measure(server, args, Path(tmp))
    rate = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
    best = {k: max(r for r, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    for k, name in (("openai", "vLLM OpenAI /v1/completions (stream)"),
                    ("custom", "custom /generate-stream             ")):  # fmt: skip
        print(f"{name}: median {rate[k]:.1f}, best {best[k]:.1f} output tok/s; "
              f"API process {cpu[k]:.0f} CPU ms per 1000 tokens")  # fmt: skip
    print(
        f"ratio custom/openai: median {rate['custom'] / rate['openai']:.3f}, "
        f"best {best['custom'] / best['openai']:.3f} (goal >= 0.95); "
        f"API CPU per token {cpu['custom'] / cpu['openai']:.3f}x"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
