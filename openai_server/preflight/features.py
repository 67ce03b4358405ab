"""The feature rules: tool calling, reasoning, LoRA adapters, chat template, generation config.

Pure: the facts (the adapters as read, the model's layers, the template's parse) are gathered by
check.gather. Each refusal is one line that names the profile key and the fix; vLLM would find
each of these only after minutes of start-up, or at the first request.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from .adapters import Adapter
from .flags import FlagSet

# vLLM's default --max-lora-rank (LoRAConfig.max_lora_rank, 0.26 to 0.33) and its choices.
DEFAULT_MAX_LORA_RANK = 16
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class FeatureFacts:
    adapters: tuple[Adapter, ...] = ()
    model_linears: dict[str, tuple[int, int]] | None = None  # module -> (out, in); None unknown
    model_aliases: tuple[str, ...] = ()  # what the model is called: its id, its local path
    template_problem: str = ""  # the chat template's file or Jinja error, "" if fine or unset
    generation_config_problem: str = ""
    plugins: tuple[str, ...] = ()  # --tool-parser-plugin / --reasoning-parser-plugin in extra_args
    notes: list[str] = field(default_factory=list)


Line = tuple[str, Literal["ok", "warning", "refused"], str, str]  # (check, status, reason, fix)


def parser_lines(kind: str, key: str, name: str | None, known: frozenset[str] | None,
                 label: str, plugin: bool) -> list[Line]:  # fmt: skip
    """A parser name the target vLLM does not register (None known: not recorded, not checked)."""
    if name is None or known is None or plugin:
        return []
    if name in known or (kind == "reasoning" and name.lower() == "none" and "0.33" in label):
        return [(f"{kind} parser", "ok", f"{key}: {name} is registered in {label}", "")]
    close = difflib.get_close_matches(name, sorted(known), n=3)
    fix = f"use {' or '.join(close)}" if close else f"use one of {', '.join(sorted(known))}"
    return [(f"{kind} parser", "refused", f"{key}: {name!r} is not a {kind} parser of {label}",
             f"{fix} (or load yours with --{kind}-parser-plugin in extra_args)")]  # fmt: skip


def _same_model(base: str, aliases: tuple[str, ...]) -> bool:
    def norm(s: str) -> str:
        return s.strip().rstrip("/").lower()

    return norm(base) in {norm(a) for a in aliases}


def _targets(adapter: Adapter) -> list[str]:
    t = adapter.target_modules
    if isinstance(t, list):
        return [str(x) for x in t]
    return []


def adapter_lines(a: Adapter, facts: FeatureFacts, max_rank: int, model: str) -> list[Line]:
    where = f"lora_modules.{a.name}: {a.source}"
    check = f"LoRA {a.name}"
    if a.problem:
        return [(check, "refused", f"{where}: {a.problem}",
                 "point it at a PEFT adapter directory (adapter_config.json and "
                 "adapter_model.safetensors)")]  # fmt: skip
    if not a.downloaded:
        return [(check, "warning", f"{where}: not in the local Hugging Face cache, not checked",
                 f"download it first (hf download {a.source}) to have it checked")]  # fmt: skip
    if a.peft_type and a.peft_type.upper() != "LORA":
        return [(check, "refused", f"{where}: a {a.peft_type} adapter; vLLM serves LoRA only",
                 "use a LoRA adapter")]  # fmt: skip
    out: list[Line] = []
    if a.rank is not None and a.rank > max_rank:
        need = next((r for r in LORA_RANKS if r >= a.rank), a.rank)
        out.append((check, "refused",
                    f"{where}: rank {a.rank} > max_lora_rank {max_rank}"
                    f"{' (vLLM default)' if max_rank == DEFAULT_MAX_LORA_RANK else ''}",
                    f"set max_lora_rank: {need}"))  # fmt: skip
    linears = facts.model_linears
    if linears is not None:
        wrong = {m: s for m, s in a.shapes.items() if m in linears and linears[m] != s}
        if wrong:
            mod, (o, i) = next(iter(wrong.items()))
            mo, mi = linears[mod]
            out.append((check, "refused",
                        f"{where}: trained on {a.base_model or 'another model'} ({mod} {i}->{o}), "
                        f"not on {model} ({mod} {mi}->{mo})",
                        f"use an adapter trained on {model}"))  # fmt: skip
            return out
        names = {m.rsplit(".", 1)[-1] for m in linears}
        missing = [t for t in _targets(a) if t not in names and t not in linears]
        if missing:
            trained = f"trained on {a.base_model}, " if a.base_model else ""
            out.append((check, "refused",
                        f"{where}: {trained}targets {', '.join(missing)}, which {model} does "
                        f"not have (its layers have {', '.join(sorted(names))})",
                        f"use an adapter trained on {model}"))  # fmt: skip
            return out
    if a.base_model and not _same_model(a.base_model, facts.model_aliases):
        # refused even when the shapes match: an adapter for the base model applied to its chat
        # fine-tune (or the reverse) loads and answers, and answers worse
        out.append((check, "refused", f"{where}: trained on {a.base_model}, not on {model}",
                    f"use an adapter trained on {model}; if {a.base_model} is this model under "
                    "another name, write that in base_model_name_or_path of its "
                    "adapter_config.json"))  # fmt: skip
    if not out:
        rank = f"rank {a.rank}" if a.rank is not None else "rank unknown"
        out.append((check, "ok", f"{where}: {rank} <= {max_rank}, {len(a.shapes)} modules", ""))
    return out


def lines(profile_dump: dict[str, object], facts: FeatureFacts, flagset: FlagSet | None,
          model: str) -> list[Line]:  # fmt: skip
    """Every feature check for a profile (its model_dump), in the order of its keys."""
    out: list[Line] = []
    label = flagset.label if flagset else ""
    tool = profile_dump.get("tool_call_parser")
    reasoning = profile_dump.get("reasoning_parser")
    plugin = bool(facts.plugins)
    if flagset is not None:
        out += parser_lines("tool", "tool_call_parser", tool if isinstance(tool, str) else None,
                            flagset.tool_call_parsers, label, plugin)  # fmt: skip
        out += parser_lines("reasoning", "reasoning_parser",
                            reasoning if isinstance(reasoning, str) else None,
                            flagset.reasoning_parsers, label, plugin)  # fmt: skip
    rank = profile_dump.get("max_lora_rank")
    max_rank = rank if isinstance(rank, int) else DEFAULT_MAX_LORA_RANK
    for adapter in facts.adapters:
        out += adapter_lines(adapter, facts, max_rank, model)
    if facts.template_problem:
        out.append(
            (
                "chat template",
                "refused",
                f"chat_template: {facts.template_problem}",
                "point chat_template at a readable Jinja file, or write the template inline",
            )
        )
    if facts.generation_config_problem:
        out.append(("generation config", "refused",
                    f"generation_config: {facts.generation_config_problem}",
                    "use auto, vllm, or a directory with a generation_config.json"))  # fmt: skip
    return out
