"""Output tokens/s: our /generate-stream against vLLM's OpenAI server, same profile, same workload.

    .venv/bin/python benchmarks/custom_vs_openai.py --profile tiny-cpu --port 8450

Each server is started with `serve launch` (the product path), measured, and stopped before the
other starts: never both at once (they would share, and fight for, the same CPUs and memory).
Workload: N prompts at concurrency C, each streaming exactly T tokens (ignore_eos, greedy), so both
servers generate the same number of tokens; output tokens/s = tokens counted by the server / wall
time. The CPU machines are shared (other people's servers come and go), so a single measurement
means little: the servers are started in the order A B B A (`--cycles` times), each runs the
workload `--rounds` times after a warm-up, and the ratio compares medians (best rounds also shown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

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


async def workload(base_url: str, send: Request, prompts: int, concurrency: int) -> float:
    """Output tokens/s for `prompts` requests, at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> int:
        async with gate:
            return await send(client, f"Benchmark prompt number {i}: tell a long story.")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        await send(client, "warm up")
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(client, i) for i in range(prompts)))
        return sum(counts) / (time.perf_counter() - start)


def start(server: str, profile: str, port: int, tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready, log = tmp / f"ready-{server}", tmp / f"{server}.log"
    cmd = [sys.executable, "-m", "openai_server", "launch", "--profile", profile,
           "--server", server, "--set", f"port={port}", "--ready-file", str(ready),
           "--log-format", "plain"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 600
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"{server} server did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, log


def measure(server: str, args: argparse.Namespace, tmp: Path) -> list[float]:
    proc, _ = start(server, args.profile, args.port, tmp)
    base = f"http://127.0.0.1:{args.port}"
    try:
        model = httpx.get(base + "/v1/models").json()["data"][0]["id"]

        async def send(client: httpx.AsyncClient, prompt: str) -> int:
            if server == "custom":
                return await custom_request(client, prompt, args.tokens)
            return await openai_request(client, prompt, args.tokens, model)

        rates = []
        for _ in range(args.rounds):
            rates.append(asyncio.run(workload(base, send, args.prompts, args.concurrency)))
            print(f"  {server}: {rates[-1]:.1f} output tok/s", flush=True)
        return rates
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny-cpu")
    p.add_argument("--port", type=int, default=8450)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--rounds", type=int, default=3, help="workload runs per server start")
    p.add_argument("--cycles", type=int, default=1, help="repeat the A B B A start order")
    args = p.parse_args()
    print(
        f"profile {args.profile}: {args.prompts} prompts, concurrency {args.concurrency}, "
        f"{args.tokens} output tokens each (ignore_eos), {args.rounds} rounds per start, "
        f"{args.cycles} x A B B A"
    )
    rates: dict[str, list[float]] = {"openai": [], "custom": []}
    with tempfile.TemporaryDirectory() as tmp:
        for server in ["openai", "custom", "custom", "openai"] * args.cycles:
            rates[server] += measure(server, args, Path(tmp))
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"vLLM OpenAI /v1/completions (stream): median {med['openai']:.1f}, "
        f"best {best['openai']:.1f} output tok/s"
    )
    print(
        f"custom /generate-stream:              median {med['custom']:.1f}, "
        f"best {best['custom']:.1f} output tok/s"
    )
    print(
        f"ratio custom/openai: median {med['custom'] / med['openai']:.3f}, "
        f"best {best['custom'] / best['openai']:.3f} (goal >= 0.95)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
