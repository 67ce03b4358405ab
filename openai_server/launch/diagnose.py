"""Failures explained: vLLM's output -> one cause, the profile change that fixes it, an exit code.

Pure: a list of output lines in, a `Diagnosis` (or None for an unknown failure, where the launcher
shows the last lines instead) out. A failed vLLM start prints hundreds of lines of traceback, with
the root cause printed once by the engine process and the API server's own traceback after it;
each signature below looks for the root-cause line itself, in the order of `SIGNATURES` (specific
causes first, "the engine died" last, since every engine failure ends in that too).

Signatures come from the upstream reports listed in docs/vllm-facts.md ("Failure signatures") and
from the format strings of vLLM 0.26 and 0.32 (old and new forms); each has a fixture under
tests/faults/logs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from ..errors import ExitCode
from ..flagnames import key_of
from .phases import strip_ansi

CONTEXT_BEFORE = 3  # lines shown before the matching line
CONTEXT_AFTER = 2


@dataclass(frozen=True)
class Context:
    """What the caller knows that the log may not say (the tail may have lost the first lines)."""

    profile_keys: Collection[str]
    port: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class Diagnosis:
    exit_code: ExitCode
    cause: str  # one line: what went wrong, with vLLM's own numbers
    fix: str  # one line: the concrete profile change
    lines: list[str]  # the relevant log lines (the match and a few around it)
    values: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Log:
    lines: list[str]  # ANSI-free

    def find(self, pattern: re.Pattern[str]) -> tuple[int, re.Match[str]] | None:
        for i, line in enumerate(self.lines):
            if m := pattern.search(line):
                return i, m
        return None

    def first(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = self.find(pattern)
        return found[1] if found else None

    def around(self, i: int) -> list[str]:
        """The matching line and a few informative lines around it (traceback frames skipped)."""
        before = [ln for ln in self.lines[:i] if _informative(ln)][-CONTEXT_BEFORE:]
        after = [ln for ln in self.lines[i + 1 :] if _informative(ln)][:CONTEXT_AFTER]
        return [*before, self.lines[i], *after]


_LOG_PREFIX = re.compile(
    r"^(?:\(\S+ pid=\d+\) )?(?:(?:DEBUG|INFO|WARNING|ERROR) \S+ \S+ \[\S+\] ?)?"
)
# Traceback frames (indented), their source lines and ^^^^ markers say little to an operator.
_NOISE = re.compile(r"^(?:\s|Traceback \(most recent call last\)|$)")


def _informative(line: str) -> bool:
    return not _NOISE.match(_LOG_PREFIX.sub("", line))


Matcher = Callable[[_Log, Context], Diagnosis | None]
_GIB = r"([0-9.]+)"

# ---- KV cache too small -------------------------------------------------------------------------
_KV_NEW = re.compile(
    r"max seq len \((\d+)\), \(" + _GIB + r" GiB KV cache is needed, which is larger than the "
    r"available KV cache memory \(" + _GIB + r" GiB\)"
)
_KV_ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
_KV_OLD = re.compile(
    r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in KV "
    r"cache \((\d+)\)"
)
_KV_NONE = re.compile(r"No available memory for the cache blocks")
_CPU_BACKEND = re.compile(r"CPU KV cache|GiB for KV cache on node|cpu_worker\.py|CPU memory util")


def _kv_cache(log: _Log, ctx: Context) -> Diagnosis | None:
    cpu = log.first(_CPU_BACKEND) is not None
    more_memory = (
        "raise env VLLM_CPU_KVCACHE_SPACE (GiB)" if cpu else "raise gpu_memory_utilization"
    )
    if found := log.find(_KV_NEW):
        i, m = found
        est = log.first(_KV_ESTIMATE)
        values: dict[str, str | int | float] = {
            "max_model_len": int(m[1]),
            "needed_gib": float(m[2]),
            "available_gib": float(m[3]),
        }
        cause = (
            f"KV cache too small: one sequence of max_model_len {m[1]} needs {m[2]} GiB of KV "
            f"cache, only {m[3]} GiB is available"
        )
        if est is not None:
            values["suggested_max_model_len"] = int(est[1])
            fix = f"set max_model_len: {est[1]} (vLLM's own estimate), or {more_memory}"
        else:
            fix = f"lower max_model_len, or {more_memory}"
        return Diagnosis(ExitCode.KV_CACHE_TOO_SMALL, cause, fix, log.around(i), values)
    if found := log.find(_KV_OLD):
        i, m = found
        cause = (
            f"KV cache too small: max_model_len {m[1]} is larger than the {m[2]} tokens the KV "
            f"cache can hold"
        )
        fix = f"set max_model_len: {m[2]} (the KV cache's capacity), or {more_memory}"
        values = {"max_model_len": int(m[1]), "suggested_max_model_len": int(m[2])}
        return Diagnosis(ExitCode.KV_CACHE_TOO_SMALL, cause, fix, log.around(i), values)
    if found := log.find(_KV_NONE):
        i, _ = found
        cause = "no memory left for the KV cache after loading the weights"
        return Diagnosis(ExitCode.KV_CACHE_TOO_SMALL, cause, more_memory, log.around(i))
    return None


# ---- bf16 on compute capability < 8 -------------------------------------------------------------
_BF16 = re.compile(r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0")
_BF16_GPU = re.compile(r"Your (.+?) GPU (?:has compute capability (\d+\.\d+)|does not have)")


def _bf16(log: _Log, ctx: Context) -> Diagnosis | None:
    if not (found := log.find(_BF16)):
        return None
    i, _ = found
    gpu = _BF16_GPU.search(log.lines[i])
    name = gpu[1] if gpu else "this GPU"
    cc = gpu[2] if gpu and gpu[2] else None
    values: dict[str, str | int | float] = {"gpu": name}
    if cc:
        values["compute_capability"] = cc
    where = f"{name} (compute capability {cc})" if cc else name
    cause = f"bfloat16 is not supported on {where}: it needs compute capability 8.0 or newer"
    return Diagnosis(ExitCode.BF16_UNSUPPORTED, cause, "set dtype: half", log.around(i), values)


# ---- not enough free memory at start ------------------------------------------------------------
_GPU_BUSY = re.compile(
    r"Free memory on device (\S+) \(" + _GIB + "/" + _GIB + r" GiB\) on startup is less than "
    r"desired GPU memory utilization \(([0-9.]+), " + _GIB + r" GiB\)"
)
_CPU_BUSY = re.compile(
    r"Available memory on node (\d+) \(" + _GIB + "/" + _GIB + r" GiB\) on (?:startup|kv cache "
    r"allocation) is less than (?:desired CPU memory utilization|requested memory)"
)


def _memory_busy(log: _Log, ctx: Context) -> Diagnosis | None:
    if found := log.find(_GPU_BUSY):
        i, m = found
        free, total, util = float(m[2]), float(m[3]), float(m[4])
        fits = int(free / total * 100) / 100 - 0.01  # what would fit now, with a little slack
        cause = (
            f"not enough free GPU memory on {m[1]}: {m[2]} of {m[3]} GiB free, "
            f"gpu_memory_utilization {m[4]} wants {m[5]} GiB (another process holds the rest: "
            f"often an orphaned vLLM engine)"
        )
        fix = "stop the processes holding the GPU (nvidia-smi lists them)"
        if fits > 0.05:
            fix += f", or set gpu_memory_utilization: {fits:.2f}"
        values: dict[str, str | int | float] = {
            "device": m[1],
            "free_gib": free,
            "total_gib": total,
            "gpu_memory_utilization": util,
        }
        return Diagnosis(ExitCode.GPU_MEMORY_BUSY, cause, fix, log.around(i), values)
    if found := log.find(_CPU_BUSY):
        i, m = found
        cause = (
            f"not enough free CPU memory on NUMA node {m[1]}: {m[2]} of {m[3]} GiB available "
            f"(on the CPU backend gpu_memory_utilization is a fraction of all memory)"
        )
        fix = "set env VLLM_CPU_KVCACHE_SPACE: '4' (GiB, sizes the KV cache explicitly)"
        fix += ", or lower gpu_memory_utilization, or stop other servers on this machine"
        values = {"node": int(m[1]), "free_gib": float(m[2]), "total_gib": float(m[3])}
        return Diagnosis(ExitCode.GPU_MEMORY_BUSY, cause, fix, log.around(i), values)
    return None


# ---- CUDA out of memory -------------------------------------------------------------------------
_OOM = re.compile(
    r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUDA error: out of memory|"
    r"Failed to load model - not enough GPU memory"
)
_OOM_HOLDER = re.compile(r"Process (\d+) has ([0-9.]+ [GM]iB) memory in use")
_OOM_TRIED = re.compile(r"Tried to allocate ([0-9.]+ [GM]iB)")


def _cuda_oom(log: _Log, ctx: Context) -> Diagnosis | None:
    if not (found := log.find(_OOM)):
        return None
    i, _ = found
    text = "\n".join(log.lines[i:])
    holders = [f"pid {pid} ({size})" for pid, size in dict(_OOM_HOLDER.findall(text)).items()]
    tried = _OOM_TRIED.search(text)
    loading = "Failed to load model" in text or "load_model" in text
    what = "loading the weights" if loading else "running the model"
    cause = f"CUDA out of memory while {what}"
    if tried:
        cause += f" (tried to allocate {tried[1]})"
    if holders:
        cause += f"; other processes hold GPU memory: {', '.join(holders)}"
    if loading:
        fix = "set quantization (e.g. fp8) or tensor_parallel_size: 2, or a smaller model"
    else:
        fix = "lower max_num_seqs / max_num_batched_tokens or gpu_memory_utilization"
    if holders:
        fix = "stop the other GPU processes, or " + fix
    values: dict[str, str | int | float] = {"holders": ", ".join(holders)} if holders else {}
    return Diagnosis(ExitCode.CUDA_OOM, cause, fix, log.around(i), values)


# ---- a flag this vLLM does not have -------------------------------------------------------------
_UNRECOGNIZED = re.compile(r"error: unrecognized arguments: (.+)$")
_AMBIGUOUS = re.compile(r"error: ambiguous option: (--[\w-]+)(?:=\S*)? could match (.+)$")
_INVALID = re.compile(r"error: argument (--[\w-]+)(?:/\S+)?: (invalid .+)$")
# Flags users carry across upgrades that vLLM removed (kserve/kserve PR 4883, vllm 18538).
_REMOVED = {
    "--disable-log-requests": "vLLM 0.26 to 0.32 have no such flag and do not log requests by "
    "default (--enable-log-requests turns logging on; 0.33 accepts it again)",
}


def _unrecognized(log: _Log, ctx: Context) -> Diagnosis | None:
    if found := log.find(_AMBIGUOUS):
        i, m = found
        cause = f"vLLM rejected the abbreviated flag {m[1]}: it could match {m[2]}"
        fix = f"spell the flag out in extra_args (one of: {m[2]})"
        return Diagnosis(ExitCode.UNRECOGNIZED_ARGUMENT, cause, fix, log.around(i), {"flags": m[1]})
    if found := log.find(_INVALID):
        i, m = found
        key = key_of(m[1], ctx.profile_keys)
        source = f"profile key {key}" if key in ctx.profile_keys else "extra_args"
        cause = f"this vLLM rejects the value of {m[1]} (from {source}): {m[2]}"
        fix = f"change {key if key in ctx.profile_keys else m[1]} to a value this vLLM accepts"
        values: dict[str, str | int | float] = {"flags": m[1], "keys": key}
        return Diagnosis(ExitCode.UNRECOGNIZED_ARGUMENT, cause, fix, log.around(i), values)
    if not (found := log.find(_UNRECOGNIZED)):
        return None
    i, m = found
    flags = [t for t in m[1].split() if t.startswith("-")] or m[1].split()
    keys: list[str] = []
    for flag in flags:
        keys.append(key_of(flag, ctx.profile_keys))
    known = [k for k in keys if k in ctx.profile_keys]
    cause = f"this vLLM does not accept {' '.join(flags)}"
    hints = [f"{f}: {_REMOVED[f]}" for f in flags if f in _REMOVED]
    if known:
        cause += f" (from profile key {', '.join(known)})"
        fix = f"remove {', '.join(known)} from the profile (this vLLM has no such flag)"
    else:
        fix = f"remove {' '.join(flags)} from extra_args (or from the profile key it came from)"
    if hints:
        fix += "; " + "; ".join(hints)
    values = {"flags": " ".join(flags), "keys": ", ".join(keys)}
    return Diagnosis(ExitCode.UNRECOGNIZED_ARGUMENT, cause, fix, log.around(i), values)


# ---- port taken ---------------------------------------------------------------------------------
_PORT_TAKEN = re.compile(
    r"\[Errno 98\].*[Aa]ddress already in use|address already in use|EADDRINUSE"
)
_PORT_ARG = re.compile(r"'port': (\d+)")
_TORCH_PORT = re.compile(r"\bport: (\d+)\b.*EADDRINUSE")
_PORT_URL = re.compile(r"Starting vLLM server on https?://[^ ]*:(\d+)")


def _port_in_use(log: _Log, ctx: Context) -> Diagnosis | None:
    if not (found := log.find(_PORT_TAKEN)):
        return None
    i, _ = found
    # torch.distributed's rendezvous port can be the one taken (TCPStore: "port: 29500, ...,
    # name: EADDRINUSE"): then the API port is not the problem.
    if (other := _TORCH_PORT.search(log.lines[i])) and int(other[1]) != ctx.port:
        p = int(other[1])
        cause = f"port {p} (torch.distributed's rendezvous port, not the API port) is in use"
        fix = f"stop what holds {p} (ss -ltnp 'sport = :{p}'), or set env VLLM_PORT: a free port"
        return Diagnosis(ExitCode.PORT_IN_USE, cause, fix, log.around(i), {"port": p})
    port: int | None = ctx.port
    if port is None:
        m = log.first(_PORT_ARG) or log.first(_PORT_URL)
        port = int(m[1]) if m else 8000  # vLLM's default port is not among "non-default args"
    cause = f"port {port} is already in use by another process"
    fix = f"set port: to a free port (or stop what holds {port}: ss -ltnp 'sport = :{port}')"
    return Diagnosis(ExitCode.PORT_IN_USE, cause, fix, log.around(i), {"port": port})


# ---- model not found / hub unreachable ----------------------------------------------------------
_REPO_ID = re.compile(r"HFValidationError: Repo id must be in the form .*?: '([^']+)'")
_OFFLINE = re.compile(
    r"LocalEntryNotFoundError|OfflineModeIsEnabled|outgoing traffic has been disabled|"
    r"We couldn't connect to 'https://huggingface\.co'|Max retries exceeded with url: /api/models|"
    r"Failed to resolve 'huggingface\.co'"
)
_NOT_ON_HUB = re.compile(
    r"RepositoryNotFoundError|is not a local folder and is not a valid model identifier|"
    r"Invalid repository ID or local directory specified: '([^']+)'"
)
_MODEL_ARG = re.compile(r"'model': '([^']+)'|serving model (\S+)|█\s+model\s+(\S+)$")


def _model_name(log: _Log, ctx: Context) -> str:
    # vLLM's own echo of --model first: the caller may only know the served name.
    for line in log.lines:
        if m := _MODEL_ARG.search(line):
            return next(g for g in m.groups() if g)
    return ctx.model or "the model"


def _model_not_found(log: _Log, ctx: Context) -> Diagnosis | None:
    if found := log.find(_REPO_ID):
        i, m = found
        cause = f"model not found: {m[1]} is not a directory (and not a Hugging Face id)"
        fix = f"set model: to an existing local directory (checked: {m[1]})"
        return Diagnosis(ExitCode.MODEL_NOT_FOUND, cause, fix, log.around(i), {"model": m[1]})
    if found := log.find(_OFFLINE):
        i, _ = found
        name = _model_name(log, ctx)
        cause = f"model {name} is not in the local Hugging Face cache and the hub is unreachable"
        fix = (
            f"download {name} where there is network (huggingface-cli download {name}) into "
            f"this HF_HOME, or set model: to a local directory"
        )
        return Diagnosis(ExitCode.MODEL_NOT_FOUND, cause, fix, log.around(i), {"model": name})
    if found := log.find(_NOT_ON_HUB):
        i, m = found
        name = m[1] if m.lastindex and m[1] else _model_name(log, ctx)
        cause = f"model not found: {name} is neither a local directory nor a model on the hub"
        fix = "set model: to an existing local directory or a valid Hugging Face id"
        return Diagnosis(ExitCode.MODEL_NOT_FOUND, cause, fix, log.around(i), {"model": name})
    return None


# ---- CPU attention cannot run this head size ----------------------------------------------------
_CPU_HEAD = re.compile(r"Unsupported CPU attention configuration: head_dim=(\d+)")


def _cpu_head_size(log: _Log, ctx: Context) -> Diagnosis | None:
    if not (found := log.find(_CPU_HEAD)):
        return None
    i, m = found
    cause = (
        f"vLLM's CPU attention cannot run this model's head size (head_dim={m[1]}); the engine "
        f"dies at the first request"
    )
    fix = (
        "serve this model on a GPU profile, or pick a model whose head_dim the CPU backend supports"
    )
    return Diagnosis(
        ExitCode.CPU_ATTENTION_HEAD_SIZE, cause, fix, log.around(i), {"head_dim": int(m[1])}
    )


# ---- NCCL / shared memory -----------------------------------------------------------------------
_SHM = re.compile(
    r"NCCL WARN Error while (?:creating|attaching to) shared memory segment|"
    r"NCCL WARN Call to posix_fallocate failed|ncclShmOpen"
)
_NCCL = re.compile(r"NCCL error|ncclSystemError|ncclInternalError|ncclUnhandledCudaError")


def _nccl(log: _Log, ctx: Context) -> Diagnosis | None:
    if found := log.find(_SHM):
        i, _ = found
        cause = "NCCL could not create its shared-memory segment in /dev/shm (too small)"
        fix = (
            "run the container with --ipc=host or --shm-size=16g (Docker's default /dev/shm is "
            "64 MB), or set tensor_parallel_size: 1"
        )
        return Diagnosis(ExitCode.NCCL_SHM, cause, fix, log.around(i))
    if found := log.find(_NCCL):
        i, _ = found
        cause = "NCCL failed between the tensor-parallel workers"
        fix = (
            "in a container use --ipc=host; check the GPUs see each other (nvidia-smi topo -m); "
            "rerun with env NCCL_DEBUG: INFO for NCCL's reason"
        )
        return Diagnosis(ExitCode.NCCL_SHM, cause, fix, log.around(i))
    return None


# ---- the engine core died, or never started ----------------------------------------------------
_ENGINE_DIED = re.compile(
    r"engine core exited unexpectedly|EngineDeadError|EngineCore encountered an issue|"
    r"Engine core process \S+ died unexpectedly|Process (EngineCore\S*) \(PID: (\d+)\) died with "
    r"exit code (-?\d+)|Engine core initialization failed|"
    r"(EngineCore|WorkerProc) failed to start\.|EngineCore encountered a fatal error\.|"
    r"(Worker proc \S+) died unexpectedly|WorkerProc failed\."
)
_EXCEPTION = re.compile(
    r"^(?:\(\S+ pid=\d+\) )?(?:ERROR \S+ \S+ \[\S+\] )?(\w+(?:\.\w+)*(?:Error|Exception)): (.+)$"
)
# Exceptions that only point at another one: the executor's "Worker failed with error '...',
# please check the stack trace above for the root cause", "WorkerProc initialization failed due to
# an exception in a background process. See stack trace for root cause." (vLLM 0.26 to 0.33).
_WRAPPER = re.compile(r"root cause")
# Lines after which vLLM does not become ready (or has lost its engine) while its processes may
# stay alive: a two-GPU start sat 282 s after "EngineCore failed to start." (the hardening issue).
# The format strings of vLLM 0.26 to 0.33, logged at ERROR: v1/engine/core.py run_engine_core
# ("EngineCore failed to start." / "EngineCore encountered a fatal error."),
# v1/executor/multiproc_executor.py WorkerProc.worker_main ("WorkerProc failed to start." /
# "WorkerProc failed.") and MultiprocExecutor's worker monitor ("Worker proc %s died unexpectedly").
_FATAL = re.compile(
    r"\bERROR \d\d-\d\d \d\d:\d\d:\d\d \[[^\]]+\] (?:EngineCore failed to start\.|"
    r"EngineCore encountered a fatal error\.|WorkerProc failed to start\.|WorkerProc failed\.|"
    r"Worker proc \S+ died unexpectedly)"
)


def fatal_line(line: str) -> bool:
    """Whether vLLM's output line says the engine failed to start or died (the launcher then stops
    the group at once, whether vLLM's processes exit or not). Pure; called for every line."""
    return "ERROR" in line and _FATAL.search(strip_ansi(line)) is not None


# A worker's exception is recoverable when it answers one call (a runtime LoRA load that fails), so
# it is not fatal by itself; but when the engine then waits on the shared-memory broadcast, the
# failed rank is not coming back: measured on 2x H200, vLLM 0.26, tensor parallel 2, rank 1 hit
# "CUDA driver error: invalid argument" and the engine logged this wait once a minute for 7 min,
# its processes busy (so no stall), until stopped (vllm/distributed/.../shm_broadcast.py).
_WORKER_EXCEPTION = re.compile(r"\bERROR \d\d-\d\d [\d:]+ \[[^\]]+\] WorkerProc hit an exception\.")
_BROADCAST_WAIT = "No available shared memory broadcast block found"


class FatalWatch:
    """The fatal lines of a server's output, one line at a time: `fatal_line`'s, and a worker
    exception followed by the engine waiting on the broadcast (a hang that keeps logging)."""

    def __init__(self) -> None:
        self.worker_error: str | None = None

    def feed(self, line: str) -> str | None:
        """The line that makes the run fatal, None while it is not."""
        if fatal_line(line):
            return line
        plain = strip_ansi(line)
        if "ERROR" in plain and _WORKER_EXCEPTION.search(plain):
            self.worker_error = plain
        elif self.worker_error is not None and _BROADCAST_WAIT in plain:
            return self.worker_error
        return None


def _engine_died(log: _Log, ctx: Context) -> Diagnosis | None:
    if not (found := log.find(_ENGINE_DIED)):
        return None
    i, m = found
    values: dict[str, str | int | float] = {}
    if m[3] is not None:
        values["engine_exit_code"] = int(m[3])
    if "initialization failed" in m[0]:  # the API server's error: the engine's came before
        root = _root_exception(log, i)
        cause = "the engine core (EngineCore) failed to start"
        if root:
            cause += f": {root}"
        fix = "see the engine's error below; nothing in the profile is known to cause it"
        return Diagnosis(ExitCode.ENGINE_DIED, cause, fix, log.around(i), values)
    if "failed to start" in m[0]:
        root = _root_cause(log, i)
        who = "a worker (WorkerProc)" if m[4] == "WorkerProc" else "the engine core (EngineCore)"
        cause = f"{who} failed to start"
        if root:
            cause += f": {root}"
        fix = "see the engine's error below; nothing in the profile is known to cause it"
        return Diagnosis(ExitCode.ENGINE_DIED, cause, fix, log.around(i), values)
    if m[5] is not None or m[0] == "WorkerProc failed.":
        root = _root_cause(log, i)
        cause = f"a worker process of the engine failed ({m[5] or 'WorkerProc'})"
        cause += f": {root}" if root else "; the engine cannot serve"
        fix = "set restart: on-failure to bring it back; if it repeats, see the worker's error"
        return Diagnosis(ExitCode.ENGINE_DIED, cause, fix, log.around(i), values)
    code = f" (exit code {m[3]})" if m[3] is not None else ""
    cause = f"the engine core process (VLLM::EngineCore) died{code}; the API server cannot serve"
    if "fatal error" in m[0] and (root := _root_cause(log, i)):
        cause = f"the engine core (VLLM::EngineCore) hit a fatal error: {root}"
    fix = (
        "set restart: on-failure to bring it back; if it repeats, check the kernel's OOM killer "
        "(dmesg) and the engine's last lines"
    )
    return Diagnosis(ExitCode.ENGINE_DIED, cause, fix, log.around(i), values)


def _root_cause(log: _Log, at: int) -> str | None:
    """The exception of the traceback logged after line `at`, unless that only points "above"
    (then the last one printed before it: a worker's, printed first)."""
    after = next((m for ln in log.lines[at + 1 :] if (m := _EXCEPTION.search(ln))), None)
    if after is not None and not _WRAPPER.search(after[2]):
        return _exception_text(after)
    before = _root_exception(log, at)
    if before is None and after is not None:
        return _exception_text(after)
    return before


def _root_exception(log: _Log, before: int) -> str | None:
    """The last `SomeError: message` printed before the API server's own error."""
    for line in reversed(log.lines[:before]):
        if (m := _EXCEPTION.search(line)) and "Engine core initialization" not in m[2]:
            return _exception_text(m)
    return None


def _exception_text(m: re.Match[str]) -> str:
    """`pkg.mod.SomeError: message` (an _EXCEPTION match) -> `SomeError: message`, bounded."""
    return f"{m[1].rsplit('.', 1)[-1]}: {m[2]}"[:300]


SIGNATURES: tuple[Matcher, ...] = (
    _bf16,
    _kv_cache,
    _memory_busy,
    _cuda_oom,
    _nccl,
    _cpu_head_size,
    _unrecognized,
    _port_in_use,
    _model_not_found,
    _engine_died,
)


def diagnose(
    lines: Sequence[str],
    *,
    profile_keys: Collection[str] | None = None,
    port: int | None = None,
    model: str | None = None,
) -> Diagnosis | None:
    """Classify a failed server's output; None when no known signature matches."""
    log = _Log([strip_ansi(line).rstrip("\n") for line in lines])
    ctx = Context(frozenset() if profile_keys is None else profile_keys, port, model)
    for matcher in SIGNATURES:
        if found := matcher(log, ctx):
            return found
    return None
