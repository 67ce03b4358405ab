"""`serve launch` after its options are parsed: one request in, a supervised server out.

The CLI builds a `LaunchRequest` (the resolved profile and the launcher's options, their defaults
defined once in launch/options.py) and calls `launch`; everything between the profile and the run
loop is decided here: this node's role, the preflight, the options, the rendered command.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import multinode, ports, render
from .errors import RefusedError, ServeError
from .launch.options import Timing
from .launch.restart import RESTART_LIMIT
from .profile import BUILTIN_MODEL_PREFIX, Profile

if TYPE_CHECKING:
    from .launch.options import LaunchOptions
    from .launch.reporter import Reporter


@dataclass(frozen=True)
class LaunchRequest:
    profile: Profile
    origin: str  # where the profile came from, as the launcher says it
    timing: Timing
    restart_limit: int = RESTART_LIMIT
    ready_file: Path | None = None
    log_format: Literal["auto", "plain", "json"] = "auto"
    verbose: bool = False
    log_file: Path | None = None
    check: bool = True  # the preflight checks (serve check) before anything starts
    smoke: bool = False  # `serve smoke` right after ready
    node_rank: int | None = None
    head_address: str | None = None
    join_timeout: float = multinode.JOIN_TIMEOUT_S
    control_port: int = ports.CONTROL
    record_compile: bool = True  # once ready, for `serve cache pack` (cache/record.py)


def launch(req: LaunchRequest) -> None:
    """Check, render, start and supervise until the server is stopped or fails."""
    from . import tiny
    from .clients import commands as clients_commands
    from .launch.entry import options_for
    from .launch.reporter import Reporter
    from .launch.supervisor import run
    from .preflight import commands as preflight_commands
    from .preflight.flags import target_vllm

    prof = req.profile
    head = node_role(prof, req.node_rank, req.head_address)
    if req.check:
        hardware = preflight_commands.before_launch(prof, python=sys.executable)
        if head is not None and req.node_rank is not None:
            preflight_commands.before_node(
                prof, rank=req.node_rank, control_port=req.control_port, hardware=hardware
            )
    opts = options_for(prof, os.environ, timing=req.timing, restart_limit=req.restart_limit,
                       ready_file=req.ready_file)  # fmt: skip
    if prof.model.startswith(BUILTIN_MODEL_PREFIX):
        tiny.ensure()
    # without the checks nothing runs before the server: another interpreter's vLLM stays unknown
    vllm = target_vllm(prof.python or sys.executable, may_run=req.check)
    mode = Reporter.mode_for(req.log_format, verbose=req.verbose, tty=sys.stdout.isatty())
    log = req.log_file.open("a", buffering=1) if req.log_file else None
    ui = Reporter(mode, verbose=req.verbose, log_file=log)
    began = time.time() - 2  # filesystem timestamps may be coarser than the clock
    smoke = (
        (lambda: clients_commands.after_ready(opts.base_url, opts.model_id, opts.api_key))
        if req.smoke
        else None
    )
    on_ready = ready_steps(smoke, compile_record(req, vllm, began))
    try:
        if head is not None and req.node_rank is not None:
            launch_node(req, opts, ui, vllm, head, on_ready)
            return
        command = render.render(prof, python=sys.executable, vllm=vllm, environ=os.environ)
        ui.event("command", f"profile {req.origin}: {command.shell_line()}", argv=command.argv)
        with details_shown(ui, "relevant lines of the server's output"):
            run(command, opts, ui, on_ready=on_ready)
    finally:
        ui.close()  # the live status line ends here, once, whatever ran under it
        if log is not None:
            log.close()


def ready_steps(*steps: Callable[[], None] | None) -> Callable[[], None] | None:
    given = [s for s in steps if s is not None]
    if not given:
        return None

    def run_all() -> None:
        for step in given:
            step()

    return run_all


def compile_record(
    req: LaunchRequest, vllm: tuple[str, str] | None, began: float
) -> Callable[[], None] | None:
    """Once ready, in the background: what this start wrote in the compile caches, recorded for
    `serve cache pack` (cache/record.py). Never delays or fails the launch."""
    if not req.record_compile or vllm is None or req.profile.server == "custom":
        return None

    def record() -> None:
        from .cache.record import record_quietly

        prof = req.profile
        record_quietly(req.origin, prof.model_dump(mode="json"), vllm[1],
                       render.model_path(prof), began, "launch")  # fmt: skip

    return lambda: threading.Thread(target=record, name="compile-record", daemon=True).start()


@contextmanager
def details_shown(ui: Reporter, title: str) -> Iterator[None]:
    """A failure's relevant output lines go to the reporter (once), its one line to the CLI."""
    try:
        yield
    except ServeError as e:
        if e.detail:
            ui.detail(title, e.detail)
            e.detail = []
        raise


def node_role(prof: Profile, node_rank: int | None, head_address: str | None) -> str | None:
    """The head's address when this launch is one node of several, None for a single node;
    RefusedError (one line) when the options and the profile disagree."""
    nodes = prof.plan.nodes
    if nodes == 1:
        if node_rank is not None or head_address is not None:
            raise RefusedError("launch: --node-rank/--head-address: the profile runs on one node "
                               "(nodes: 1); fix: drop them, or set nodes")  # fmt: skip
        return None
    if node_rank is None:
        raise RefusedError(
            f"launch: nodes: {nodes}: run `serve launch --node-rank R --head-address HOST` on "
            f"each of the {nodes} nodes (R = 0 on the head, which serves the API)"
        )
    if node_rank >= nodes:
        raise RefusedError(f"launch: --node-rank {node_rank}: the profile has {nodes} nodes "
                           f"(ranks 0 to {nodes - 1})")  # fmt: skip
    head = head_address or prof.master_addr or prof.data_parallel_address
    if not head:
        raise RefusedError(
            "launch: --head-address: node 0's address is needed on every node (the profile sets "
            "neither master_addr nor data_parallel_address); fix: --head-address HOST"
        )
    return head


def launch_node(
    req: LaunchRequest,
    opts: LaunchOptions,
    ui: Reporter,
    vllm: tuple[str, str] | None,
    head: str,
    on_ready: Callable[[], None] | None,
) -> None:
    """This node's part of a server over several nodes: the head serves, the workers join."""
    from .multinode import node
    from .multinode import spec as node_spec

    assert req.node_rank is not None  # launch() calls this for a node of several only
    rank, origin = req.node_rank, req.origin
    spec = node_spec.spec(req.profile, rank=rank, head=head, python=sys.executable, vllm=vllm,
                      environ=os.environ, control_port=req.control_port)  # fmt: skip
    for part in (spec.ray, spec.server):
        if part is not None:
            ui.event("command", f"profile {origin}, node {rank}: {part.shell_line()}",
                     argv=part.argv)  # fmt: skip
    with details_shown(ui, "relevant lines of the output"):
        if rank == 0:
            node.run_head(spec, opts, ui, req.join_timeout, on_ready)
        else:
            node.run_worker(spec, opts, ui, req.join_timeout)
