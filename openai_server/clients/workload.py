"""What `serve bench` sends and when: prompts (random by token count, or JSONL) and arrivals.

Random prompts are sized in *tokens* by the server's own tokenizer, through vLLM's `/tokenize` and
`/detokenize` routes: words are drawn at random, tokenized, cut to the wanted count, decoded, and
re-tokenized until the count is exact (decoding and re-encoding can merge tokens at the cut). That
is the method of vLLM's own random dataset (decode random ids, re-encode, adjust), but it needs no
local tokenizer, so it works against a remote vLLM too. Endpoints without /tokenize (managed,
non-vLLM) get a calibration instead: two probe requests with max_tokens=1 measure the prompt tokens
per word from `usage.prompt_tokens`, and prompts get the number of words that should give the
wanted count (approximate; the figures report the server's counts either way).

The content of a chat message is what is sized; the chat template adds its own tokens around it,
which the server counts in `usage.prompt_tokens` (vLLM's benchmark reports the same way).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import ClientError
from .endpoint import Endpoint

# Common words: cheap to tokenize, and random sequences of them share no prefix worth caching.
WORDS = (  # noqa: SIM905 - a list literal of 250 words would be 250 lines
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government "
    "number night point home water room mother area money story fact month lot right study book "
    "eye job word business issue side kind head house service friend father power hour game line "
    "end member law car city community name president team minute idea kid body information back "
    "parent face others level office door health person art war history party result change "
    "morning reason research girl guy moment air teacher force education foot boy age policy "
    "music market sense nation plan college interest death experience effect class control care "
    "field development role effort rate heart drug show leader light voice wife police mind price "
    "report decision son view relationship town road arm difference value building action model "
    "season society tax director position player record paper space ground form event official "
    "matter center couple site project activity star table need court oil situation cost industry "
    "figure street image phone data picture practice piece land product doctor wall patient worker "
    "news test movie north love support technology step baby computer type attention film tree "
    "source organization hair window evidence population site river green quick blue stone cloud"
).split()


@dataclass(frozen=True)
class Prompt:
    """One request's input: chat messages (or completion text) and its output budget."""

    text: str
    prompt_len: int  # tokens of `text` as the server counts them (0: unknown)
    max_tokens: int
    messages: tuple[dict[str, str], ...] | None = None  # from a dataset line; else one user turn

    def chat_messages(self) -> list[dict[str, str]]:
        return list(self.messages) if self.messages else [{"role": "user", "content": self.text}]


def arrival_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Seconds after the start at which each of `n` requests is sent: a seeded Poisson process.

    Exponential gaps of mean 1/rate, then scaled so the last arrival is at n/rate exactly, as
    vLLM's benchmark does, so that runs with different seeds offer the same average load.
    `rate` = inf sends everything at once.
    """
    if n <= 0:
        return []
    if rate == float("inf"):
        return [0.0] * n
    if rate <= 0:
        raise ValueError(f"--request-rate must be > 0, got {rate:g}")
    rng = random.Random(seed)
    offsets: list[float] = []
    total = 0.0
    for _ in range(n):
        total += rng.expovariate(rate)
        offsets.append(total)
    scale = (n / rate) / offsets[-1]
    return [t * scale for t in offsets]


def load_dataset(path: Path, default_max_tokens: int, limit: int) -> list[Prompt]:
    """JSONL: each line {"prompt": str} or {"messages": [...]}, optional "max_tokens".

    The first `limit` lines are used, cycled when the file has fewer.
    """
    prompts: list[Prompt] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ClientError(f"--dataset: cannot read {path}: {e.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        prompts.append(_dataset_line(path, number, line, default_max_tokens))
    if not prompts:
        raise ClientError(f"--dataset: {path} has no prompts")
    return [prompts[i % len(prompts)] for i in range(limit)]


def _dataset_line(path: Path, number: int, line: str, default_max_tokens: int) -> Prompt:
    where = f"--dataset: {path}:{number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise ClientError(f"{where}: not JSON ({e.msg})") from None
    if not isinstance(item, dict):
        raise ClientError(f"{where}: expected an object with 'prompt' or 'messages'")
    max_tokens = item.get("max_tokens", default_max_tokens)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ClientError(f"{where}: max_tokens: {max_tokens!r} is not a positive integer")
    if isinstance(item.get("prompt"), str):
        return Prompt(item["prompt"], 0, max_tokens)
    messages = item.get("messages")
    if isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    ):
        text = "\n".join(m["content"] for m in messages)
        return Prompt(text, 0, max_tokens, tuple(messages))
    raise ClientError(f"{where}: expected 'prompt' (a string) or 'messages' (role/content objects)")


async def random_prompts(
    client: aiohttp.ClientSession, ep: Endpoint, model: str, n: int,
    input_len: int, output_len: int, seed: int,
) -> list[Prompt]:  # fmt: skip
    """`n` prompts of exactly `input_len` tokens (see the module's docstring for how)."""
    rng = random.Random(seed)
    sizer = TokenSizer(client, ep, model)
    if not await sizer.available():
        per_word = await calibrate_tokens_per_word(client, ep, model)
        words = max(1, round(input_len / per_word))
        return [Prompt(" ".join(rng.choices(WORDS, k=words)), 0, output_len) for _ in range(n)]
    gate = asyncio.Semaphore(8)

    async def one(words: list[str]) -> Prompt:
        async with gate:
            text, count = await sizer.fit(words, input_len)
        return Prompt(text, count, output_len)

    # Twice the words needed even at one token per word, so that cutting always suffices.
    draws = [rng.choices(WORDS, k=2 * input_len + 8) for _ in range(n)]
    return list(await asyncio.gather(*(one(w) for w in draws)))


class TokenSizer:
    """Cuts text to an exact token count with the server's /tokenize and /detokenize."""

    def __init__(self, client: aiohttp.ClientSession, ep: Endpoint, model: str) -> None:
        self.client, self.ep, self.model = client, ep, model

    async def available(self) -> bool:
        try:
            await self.tokenize("probe")
        except (aiohttp.ClientError, ClientError, KeyError, ValueError):
            return False
        return True

    async def tokenize(self, text: str) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        data = await self._post("/tokenize", body)
        return [int(t) for t in data["tokens"]]

    async def detokenize(self, tokens: list[int]) -> str:
        data = await self._post("/detokenize", {"model": self.model, "tokens": tokens})
        return str(data["prompt"])

    async def fit(self, words: list[str], length: int) -> tuple[str, int]:
        """Text of exactly `length` tokens when reachable in a few rounds; else the closest."""
        full = await self.tokenize(" ".join(words))
        ids = full[:length]
        text, count = "", 0
        for _ in range(5):
            text = await self.detokenize(ids)
            actual = await self.tokenize(text)
            count = len(actual)
            if count == length:
                break
            # Re-encoding merged or split tokens at the cut: trim, or pad with the tokens that
            # followed the cut in the original draw.
            ids = actual[:length] if count > length else actual + full[length : 2 * length - count]
        return text, count

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.ep.root + path
        async with self.client.post(url, json=body, headers=self.ep.headers()) as response:
            if response.status != 200:
                raise ClientError(f"{path} answered HTTP {response.status}")
            data: dict[str, Any] = await response.json()
        return data


async def calibrate_tokens_per_word(
    client: aiohttp.ClientSession, ep: Endpoint, model: str
) -> float:
    """Prompt tokens per word of WORDS text, from usage.prompt_tokens of two one-token requests."""
    counts = []
    sizes = (16, 144)
    for size in sizes:
        text = " ".join(random.Random(size).choices(WORDS, k=size))
        body = {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 1,
        }
        url = f"{ep.v1}/chat/completions"
        async with client.post(url, json=body, headers=ep.headers()) as response:
            if response.status != 200:
                raise ClientError(
                    f"calibrating prompt sizes: /v1/chat/completions answered {response.status}"
                )
            counts.append(int((await response.json())["usage"]["prompt_tokens"]))
    return max((counts[1] - counts[0]) / (sizes[1] - sizes[0]), 0.1)
