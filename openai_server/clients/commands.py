"""`serve smoke`, `serve chat`, `serve bench`: thin typer commands over the client modules.

They work against any OpenAI-compatible endpoint (our launched server, a remote vLLM, a managed
endpoint with a token in the environment). The OpenAI SDK, rich tables and matplotlib are imported
inside the commands, so `serve render` and friends never pay for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from .endpoint import DEFAULT_URL

UrlOpt = Annotated[
    str | None,
    typer.Option(help=f"server root or its /v1 base (env OPENAI_BASE_URL; default {DEFAULT_URL})"),
]
ModelOpt = Annotated[
    str | None, typer.Option(help="model id (env MODEL; default: the only one listed)")
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(help="environment variable holding the API key (default: OPENAI_API_KEY if set)"),
]


def after_ready(base_url: str, model: str, api_key: str | None) -> None:
    """`serve launch --smoke`: raise ClientError when the fresh server does not answer properly."""
    from . import smoke
    from .endpoint import Endpoint, normalize_root

    result = smoke.run(Endpoint(normalize_root(base_url), api_key), model, timeout=60)
    print(f"serve: smoke {result.line()}", flush=True)


def smoke_cmd(
    url: UrlOpt = None,
    model: ModelOpt = None,
    api_key_env: KeyEnvOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Prove the endpoint answers: model listed, a streamed chat with chunks, finish and usage.

    Exit 0, or 9 with one line naming the cause (auth, model missing, no chat template, timeout,
    connection refused, too few chunks).
    """
    from . import smoke
    from .endpoint import default_model, endpoint

    ep, model = endpoint(url, api_key_env), default_model(model)
    try:
        result = smoke.run(ep, model, timeout)
    except smoke.SmokeFailed as e:
        if as_json:
            print(json.dumps({"ok": False, "url": ep.root, "kind": e.kind, "reason": e.reason}))
        raise
    print(json.dumps(result.as_json(), indent=2) if as_json else result.line())


def chat_cmd(
    url: UrlOpt = None,
    model: ModelOpt = None,
    api_key_env: KeyEnvOpt = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus sampling")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="cap on each answer's tokens")] = None,
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each answer")] = 600.0,
) -> None:
    """Interactive streaming chat. Ctrl-C stops an answer, Ctrl-D or /exit quits."""
    from . import chat
    from .endpoint import default_model, endpoint

    sampling = {
        k: v
        for k, v in {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}.items()
        if v is not None
    }
    ep, model = endpoint(url, api_key_env), default_model(model)
    chat.run(ep, model, sampling, system, timeout)


def bench_cmd(
    url: UrlOpt = None,
    model: ModelOpt = None,
    api_key_env: KeyEnvOpt = None,
    endpoint_kind: Annotated[
        Literal["chat", "completions"],
        typer.Option("--endpoint", help="/v1/chat/completions or /v1/completions"),
    ] = "chat",
    num_prompts: Annotated[int, typer.Option(min=1, help="requests per run")] = 100,
    random_input_len: Annotated[
        int, typer.Option(min=1, help="tokens per random prompt (sized by the server's /tokenize)")
    ] = 128,
    random_output_len: Annotated[
        int, typer.Option(min=1, help="max_tokens per request (exact with ignore_eos)")
    ] = 128,
    dataset: Annotated[
        Path | None,
        typer.Option(help='JSONL prompts: {"prompt": ...} or {"messages": [...]}, "max_tokens"'),
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, help="requests in flight at most")
    ] = None,
    request_rate: Annotated[
        float, typer.Option(help="Poisson arrivals per second (inf: all at once)")
    ] = float("inf"),
    seed: Annotated[int, typer.Option(help="seed of prompts and arrivals")] = 0,
    slo: Annotated[
        str | None, typer.Option(help="goodput SLOs, e.g. ttft=2s,tpot=50ms (also e2el)")
    ] = None,
    ignore_eos: Annotated[
        bool, typer.Option(help="send vLLM's ignore_eos so outputs are exactly max_tokens")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print every figure as JSON")] = False,
    sweep: Annotated[
        str | None, typer.Option(help="concurrency levels, e.g. 1,4,16,64: one run each + plot")
    ] = None,
    plot: Annotated[Path, typer.Option(help="PNG written by --sweep")] = Path("bench-sweep.png"),
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="print two result files (--json output) side by side; runs nothing"),
    ] = None,
) -> None:
    """Load-test the endpoint; figures defined as in `vllm bench serve` (TTFT, TPOT, ITL, ...)."""
    from rich.console import Console

    from . import bench, bench_table, metrics
    from .endpoint import default_model, endpoint

    console = Console(width=max(100, Console().width))
    if compare is not None:
        a, b = (bench_table.load_result(p) for p in compare)
        console.print(bench_table.compare_table(a, b, (str(compare[0]), str(compare[1]))))
        return
    try:
        slo_seconds = metrics.parse_slo(slo) if slo else None
        levels = [int(x) for x in sweep.split(",") if x.strip()] if sweep else None
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if levels is not None and (not levels or min(levels) < 1):
        raise typer.BadParameter("--sweep: give concurrency levels >= 1, e.g. 1,4,16,64")
    ep, model = endpoint(url, api_key_env), default_model(model)
    cfg = bench.BenchConfig(
        ep=ep, model=model, endpoint=endpoint_kind,
        num_prompts=num_prompts, random_input_len=random_input_len,
        random_output_len=random_output_len, dataset=dataset, max_concurrency=max_concurrency,
        request_rate=request_rate, seed=seed, slo=slo_seconds, ignore_eos=ignore_eos,
    )  # fmt: skip
    results = bench.run(cfg, levels, progress=sys.stderr.isatty())
    if levels is None:
        result = results[0]
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            print(bench_table.headline(result))
            console.print(bench_table.result_table(result))
        return
    from . import plot as plotting

    written = plotting.sweep_png(results, plot)
    if as_json:
        print(json.dumps({"sweep": results, "plot": str(written)}, indent=2))
    else:
        console.print(bench_table.sweep_table(results))
        print(f"plot: {written}")
