"""Error types and exit codes: every user-facing failure is one of these, caught once in the CLI.

The exit codes are a public interface (Docker, Kubernetes and scripts branch on them); the README's
table is generated from `ExitCode` by a test, so the two cannot drift.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of `serve`."""

    OK = 0
    INTERNAL = 1  # a bug in serve: please report it
    USAGE = 2  # bad command line (typer/click's own code)
    PROFILE = 3  # the profile (file, --set or SERVE_* environment) is invalid
    REFUSED = 4  # preflight refused the profile on this vLLM / hardware
    START_FAILED = 5  # the server exited before it was ready
    READY_TIMEOUT = 6  # not ready before --ready-timeout (the group was killed)
    DIED_AFTER_READY = 7  # the server or its engine died after it was ready
    NOT_READY = 8  # `serve probe`: the endpoint is not ready
    CLIENT = 9  # `serve smoke` / `bench` / `chat`: the endpoint answered wrongly or not at all
    # 10..29: a failure of vLLM that serve recognised in its output (launch/diagnose.py); the error
    # names the cause and the profile change that fixes it.
    KV_CACHE_TOO_SMALL = 10  # one max_model_len sequence does not fit the KV cache memory
    CUDA_OOM = 11  # CUDA out of memory (weights, activations or CUDA graphs)
    BF16_UNSUPPORTED = 12  # bfloat16 on a GPU of compute capability < 8.0 (e.g. Tesla T4)
    GPU_MEMORY_BUSY = 13  # not enough free (GPU or CPU) memory at start: often an orphaned engine
    UNRECOGNIZED_ARGUMENT = 14  # this vLLM rejects a flag (removed or renamed)
    PORT_IN_USE = 15  # the port is taken by another process
    MODEL_NOT_FOUND = 16  # no such local directory, or the hub is unreachable (offline)
    CPU_ATTENTION_HEAD_SIZE = 17  # vLLM's CPU attention cannot run this model's head size
    NCCL_SHM = 18  # NCCL / shared-memory failure (tensor parallel in Docker without --ipc=host)
    ENGINE_DIED = 19  # the engine core process died (the API server may still exit 0)
    STARTUP_HUNG = 30  # no output, no phase change and no CPU activity for --stall-timeout
    ENGINE_HUNG = 31  # after ready, the deep probe got no token back in time (/health may say 200)
    STOP_INCOMPLETE = 32  # a process of the server's group, or its GPU memory, outlived the stop
    # a server over several nodes (serve launch --node-rank): the group, not one process, failed
    NODE_LOST = 33  # the head: a worker node's launcher, or its part of the server, went away
    HEAD_LOST = 34  # a worker: the head's launcher went away (or never answered)
    JOIN_TIMEOUT = 35  # the head: not every node joined within --join-timeout
    NO_METRICS = 36  # `serve top`: the server answers but gives no vLLM metrics (or needs a key)
    INTERRUPTED = 130  # stopped by SIGINT (128 + 2), after a clean group stop
    TERMINATED = 143  # stopped by SIGTERM (128 + 15), after a clean group stop


class ServeError(Exception):
    """Base of all errors that are reported as one line and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, detail: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Lines shown under the one-line message (e.g. the server's last output lines).
        self.detail = detail or []


class ProfileError(ServeError):
    """A profile, an override or an environment value is invalid."""

    exit_code = ExitCode.PROFILE


class RefusedError(ServeError):
    """A preflight check refused the profile."""

    exit_code = ExitCode.REFUSED


class StartFailed(ServeError):
    """The server process exited before it became ready."""

    exit_code = ExitCode.START_FAILED

    def __init__(
        self, message: str, *, detail: list[str] | None = None, code: ExitCode | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        if code is not None:
            self.exit_code = code


class ReadyTimeout(ServeError):
    """The server did not become ready before the deadline."""

    exit_code = ExitCode.READY_TIMEOUT


class DiedAfterReady(StartFailed):
    """The server or its engine died after it had been ready."""

    exit_code = ExitCode.DIED_AFTER_READY


class Hung(StartFailed):
    """The server stopped making progress (start-up stall, or an engine that no longer answers)."""


class NodeLost(StartFailed):
    """A node of a group left (its launcher or its part of the server): the group is stopped."""

    exit_code = ExitCode.NODE_LOST


class HeadLost(ServeError):
    """A worker node lost its head (or never reached it): it stopped its part and exits."""

    exit_code = ExitCode.HEAD_LOST


class JoinTimeout(ServeError):
    """Not every node of the group joined the head in time."""

    exit_code = ExitCode.JOIN_TIMEOUT


class StopIncomplete(ServeError):
    """After the stop, a process of the server's group was still alive or still held GPU memory."""

    exit_code = ExitCode.STOP_INCOMPLETE


class NotReady(ServeError):
    """A readiness probe found the endpoint not ready."""

    exit_code = ExitCode.NOT_READY


class NoMetrics(ServeError):
    """The server answers, but its /metrics is missing, not vLLM's, or behind a key."""

    exit_code = ExitCode.NO_METRICS


class ClientError(ServeError):
    """An OpenAI-compatible endpoint answered wrongly or not at all."""

    exit_code = ExitCode.CLIENT


class Interrupted(ServeError):
    """The launcher was asked to stop by a signal and stopped the server group."""

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; the server process group is gone")
        self.exit_code = ExitCode.INTERRUPTED if name == "SIGINT" else ExitCode.TERMINATED
