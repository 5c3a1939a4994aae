"""The collector: one long-lived SSH session per CARP node, following its transition log (wizard.carp.transition_log).

Each line goes, in order, to one writer thread (one database connection, whatever the number of nodes). A
session that breaks is opened again with backoff, resuming after the last line recorded, so transitions made
while carpweb, its worker or the link were down are read from the node's log when it comes back. What a line
means (a recorded event, a notice) is the services' business: they arrive here as callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import close_old_connections
from django.utils import timezone

from ..carp import transition_log
from ..models import Server
from ..ssh import SSHError
from .connect import Connector, ssh_connect

log = logging.getLogger(__name__)
IDLE_TIMEOUT = 3 * transition_log.HEARTBEAT_SECONDS + 5  # no line, not even a heartbeat: the session is dead
BACKOFF = (1, 2, 4, 8, 15, 30)  # seconds before each next try, the last one repeated
SETTLE_SECONDS = 3.0  # a failover is two transitions on two nodes: judge the cluster once both are in
SETTLE_MAX = 15.0  # a node that logs every few seconds postpones its cluster's judgement at most this long
QUEUE_LINES = 10_000  # lines waiting for the writer; past it a node's session is shed and read again later
RETRY_SECONDS = 2.0  # a cluster that could not be judged yet (a node not heard lately) is judged again
SYNC_SECONDS = 5.0  # how often the list of nodes to follow is read again
HEARD_EVERY = 30.0  # a node's heartbeats reach the database at most this often (unless it was in trouble)


@dataclass(frozen=True)
class Callbacks:
    line: Callable[[int, str], int | None]  # (server id, line) -> the cluster to re-evaluate, if any
    trouble: Callable[[int, str, float], None]  # (server id, why, seconds in trouble)
    heard: Callable[[int], None]  # a heartbeat: the node is there
    settle: Callable[[int, dict[int, datetime]], bool]  # judge a cluster (given when each node was last heard);
    # False: not sure yet, ask again later
    nodes: Callable[[], dict[int, str]]  # server id -> what identifies its session (a change restarts it)
    periodic: Callable[[], object] = lambda: None  # every SYNC_SECONDS: what needs time, not a line (calm clusters)


class Behind(Exception):
    """The writer is QUEUE_LINES behind: this session ends, and the next one resumes after the last line recorded."""


class Follower(threading.Thread):
    """Follows one node for as long as it is wanted."""

    def __init__(self, server_id: int, lines: queue.Queue[tuple[str, int, str]], connector: Connector) -> None:
        super().__init__(name=f"follow-{server_id}", daemon=True)
        self.server_id, self.lines, self.connector = server_id, lines, connector
        self.stop = threading.Event()
        self.transport: object | None = None

    def _session(self) -> None:
        server = Server.objects.select_related("cluster").get(pk=self.server_id)
        transport = self.connector(server)
        self.transport = transport
        try:
            command = transition_log.follow_command(server.events_epoch or "-", server.events_seq)
            transport.follow(command, self._offer, IDLE_TIMEOUT)
        finally:
            transport.close()
            self.transport = None

    def _offer(self, line: str) -> None:
        try:
            self.lines.put_nowait(("line", self.server_id, line))
        except queue.Full:
            raise Behind from None

    def run(self) -> None:
        failures, trouble_since = 0, None
        while not self.stop.is_set():
            close_old_connections()
            started = time.monotonic()
            try:
                self._session()
                why = "the node closed the session"
            except SSHError as e:
                why = e.message
            except Behind:
                why = (f"carpweb's collector is {QUEUE_LINES} lines behind: this node's session was shed and is "
                       "read again from its log (nothing is lost)")
                log.warning("collector: %s (server %s)", why, self.server_id)
            except Server.DoesNotExist:
                return
            if self.stop.is_set():
                return
            ended = time.monotonic()
            if ended - started > IDLE_TIMEOUT:  # the session worked for a while: the trouble starts now
                failures, trouble_since = 0, ended
            trouble_since = trouble_since or started
            with contextlib.suppress(queue.Full):  # a writer that far behind hears of it at the next failure
                self.lines.put(("trouble", self.server_id, f"{time.monotonic() - trouble_since:.0f}|{why}"), timeout=5)
            self.stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    def halt(self) -> None:
        self.stop.set()
        transport = self.transport
        if transport is not None:
            transport.close()  # type: ignore[attr-defined]  # ends a follow() waiting on the node


class Collector:
    def __init__(self, callbacks: Callbacks, connector: Connector = ssh_connect) -> None:
        self.callbacks, self.connector = callbacks, connector
        self.lines: queue.Queue[tuple[str, int, str]] = queue.Queue(QUEUE_LINES)
        self.followers: dict[int, tuple[str, Follower]] = {}
        self.timers: dict[int, threading.Timer] = {}
        self.unsettled: dict[int, float] = {}  # cluster id -> when its first transition not yet judged arrived
        self.heard: dict[int, datetime] = {}  # server id -> when its session last gave a line (heartbeats too)
        self.told: dict[int, float] = {}  # server id -> when `callbacks.heard` was last called for it
        self.troubled: set[int] = set()  # nodes whose trouble was reported and that were not heard since
        self.stopping = threading.Event()

    def sync(self) -> None:
        """Follow the nodes that should be followed, and no other (an endpoint or pin change restarts one)."""
        wanted = self.callbacks.nodes()
        for server_id, (identity, follower) in list(self.followers.items()):
            if wanted.get(server_id) != identity:
                follower.halt()
                del self.followers[server_id]
        for server_id, identity in wanted.items():
            if server_id not in self.followers:
                follower = Follower(server_id, self.lines, self.connector)
                self.followers[server_id] = (identity, follower)
                follower.start()

    def _settle_later(self, cluster_id: int, seconds: float = SETTLE_SECONDS, retry: bool = False) -> None:
        """Judge the cluster `seconds` after its latest transition, but never later than SETTLE_MAX after the first
        one not judged yet: a node that keeps logging cannot postpone the judgement for ever."""
        first = self.unsettled.setdefault(cluster_id, time.monotonic())
        if not retry:
            seconds = max(0.0, min(seconds, first + SETTLE_MAX - time.monotonic()))
        previous = self.timers.pop(cluster_id, None)
        if previous is not None:
            previous.cancel()
        timer = threading.Timer(seconds, self._settle, args=[cluster_id])
        timer.daemon = True
        self.timers[cluster_id] = timer
        timer.start()

    def _settle(self, cluster_id: int) -> None:
        # Judged by the writer, in order with the lines; a timer may wait for room (it never sheds a judgement).
        self.lines.put(("settle", cluster_id, ""))

    def _handle(self, kind: str, ident: int, text: str) -> None:
        if kind == "line":
            self.heard[ident] = timezone.now()
            if text.startswith(transition_log.HEARTBEAT):
                # A heartbeat is news for the database only now and then, or when the node was in trouble:
                # a thousand nodes send five hundred a second.
                if ident in self.troubled or time.monotonic() - self.told.get(ident, -HEARD_EVERY) >= HEARD_EVERY:
                    self.callbacks.heard(ident)
                    self.told[ident] = time.monotonic()
                    self.troubled.discard(ident)
            elif (cluster_id := self.callbacks.line(ident, text)) is not None:
                self._settle_later(cluster_id)
        elif kind == "trouble":
            self.troubled.add(ident)
            seconds, why = text.split("|", 1)
            self.callbacks.trouble(ident, why, float(seconds))
        elif kind == "settle":
            if self.callbacks.settle(ident, dict(self.heard)):
                self.unsettled.pop(ident, None)
            else:
                self._settle_later(ident, RETRY_SECONDS, retry=True)

    def run(self, seconds: float | None = None) -> None:
        """Write what the followers read until stopped (or for `seconds`); the nodes are re-read every 30 s."""
        until = time.monotonic() + seconds if seconds is not None else None
        next_sync = 0.0
        while not self.stopping.is_set() and (until is None or time.monotonic() < until):
            if time.monotonic() >= next_sync:
                close_old_connections()
                self.sync()
                try:
                    self.callbacks.periodic()
                except Exception:  # a failing check must not stop the collector
                    log.exception("collector: the periodic check failed")
                next_sync = time.monotonic() + SYNC_SECONDS
            try:
                kind, ident, text = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._handle(kind, ident, text)
            except Exception:  # one bad line must not stop the collector
                log.exception("collector: could not handle %s from %s", kind, ident)

    def stop(self) -> None:
        self.stopping.set()
        for _, follower in self.followers.values():
            follower.halt()
        for timer in self.timers.values():
            timer.cancel()
