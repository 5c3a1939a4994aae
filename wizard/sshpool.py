"""Warm SSH connections: each worker process keeps the authenticated connections it opened, for later runs.

A run leases a connection per server (`Pool.lease`) and gives it back when it ends; the connection stays open
for CARPWEB_SSH_IDLE_SECONDS, so the next Check skips the TCP connect, the key exchange, the host-key check and
the signature, which are most of what a Check costs on both sides (README, "A fleet at the floor").

- The key is everything the connection was opened with: address, port, user, auth method, a digest of the
  credential, the privilege wrapper and the pinned host key. A new credential or a re-pinned key never reuses
  an old connection: it opens a new one (and the old one closes when idle). A reused connection was checked
  against its pin when it was opened, and that pin is part of its key.
- At most CARPWEB_SSH_MAX_CONNECTIONS connections at once: opening one more closes the least recently used idle
  one first, or waits (up to the connect timeout) for one to come idle.
- Before reuse a connection is checked: closed by the server (a reboot, a restarted sshd) is seen at once, and
  one that sat idle for KEEPALIVE_AFTER gets a keepalive (a session channel opened and closed, with the connect
  timeout, for a server that vanished silently); a dead one is replaced at once, and so is one that turns out
  dead when a command's channel cannot be opened (nothing was sent on it), within the same step and without an
  error.
- Several runs may have commands on one connection at once, up to CARPWEB_SSH_MAX_SESSIONS channels (OpenSSH's
  MaxSessions is 10 by default).
- CARPWEB_SSH_IDLE_SECONDS=0 turns it off: every run opens and closes its own connections, as before.

Nothing here imports paramiko: the connection itself is wizard.ssh's.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .carp.facts import CommandResult
from .ssh import Endpoint, SSHError

KEEPALIVE_AFTER = 1.0  # seconds idle after which a connection is checked before it is used again


class Conn(Protocol):
    """What the pool needs of a connection (wizard.ssh.Connection)."""

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None, name: str | None = None) -> CommandResult: ...

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float,
               name: str | None = None) -> None: ...

    def is_open(self) -> bool: ...

    def alive(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


Opener = Callable[[Endpoint], Conn]
Key = tuple[str, int, str, str, str, str, str]


def pool_key(ep: Endpoint) -> Key:
    """What a connection was opened with; the credential only as a digest (the key is kept, the secret not)."""
    secret = hashlib.sha256(ep.secret.encode()).hexdigest()
    return ep.host, ep.port, ep.user, ep.auth, secret, ep.privilege, ep.pinned_key


@dataclass(eq=False)
class Entry:
    key: Key
    conn: Conn
    sessions: threading.BoundedSemaphore
    leases: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    dead: bool = False


@dataclass
class Stats:
    opened: int = 0
    reused: int = 0
    replaced: int = 0  # found dead on reuse (keepalive or channel open) and opened again
    closed_idle: int = 0
    evicted: int = 0  # closed to make room under the bound
    peak: int = 0


class Pool:
    def __init__(self, opener: Opener, limit: int, idle_seconds: float, max_sessions: int,
                 connect_timeout: float) -> None:
        self.opener, self.limit, self.idle_seconds = opener, max(1, limit), idle_seconds
        self.max_sessions, self.connect_timeout = max(1, max_sessions), connect_timeout
        self.entries: dict[Key, Entry] = {}
        self.opening = 0  # connections being opened (counted in the bound)
        self.stats = Stats()
        self._cond = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def enabled(self) -> bool:
        return self.idle_seconds > 0

    def size(self) -> int:
        with self._cond:
            return len(self.entries) + self.opening

    def lease(self, ep: Endpoint) -> Lease:
        """A connection to `ep` for the caller until it closes the lease; raises SSHError as Connection does."""
        return Lease(self, ep, self._take(ep))

    # -- inside ----------------------------------------------------------------------------------
    def _take(self, ep: Endpoint) -> Entry:
        key = pool_key(ep)
        with self._cond:
            entry = self.entries.get(key)
            if entry is not None and not entry.dead:
                entry.leases += 1
                idle = entry.leases == 1 and time.monotonic() - entry.idle_since >= KEEPALIVE_AFTER
            else:
                entry, idle = None, False
        if entry is not None:
            if entry.conn.is_open() and (not idle or entry.conn.alive(min(self.connect_timeout, 5.0))):
                with self._cond:
                    self.stats.reused += 1
                return entry
            self._drop(entry, replaced=True)
        return self._open(ep, key)

    def _open(self, ep: Endpoint, key: Key) -> Entry:
        """Open a new connection for `key`, inside the bound (closing an idle one, or waiting for one)."""
        deadline = time.monotonic() + self.connect_timeout
        victim: Entry | None = None
        with self._cond:
            while len(self.entries) + self.opening >= self.limit:
                idle = [e for e in self.entries.values() if e.leases == 0]
                if idle:
                    victim = min(idle, key=lambda e: e.idle_since)
                    del self.entries[victim.key]
                    self.stats.evicted += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SSHError("busy", f"{ep.name}: this worker already holds CARPWEB_SSH_MAX_CONNECTIONS="
                                   f"{self.limit} SSH connections, all in use, and none came free within "
                                   f"{self.connect_timeout:g} s. Run again, or add workers.")
                self._cond.wait(remaining)
            self.opening += 1
            self.stats.peak = max(self.stats.peak, len(self.entries) + self.opening)
        if victim is not None:
            victim.conn.close()
        try:
            conn = self.opener(ep)
        except BaseException:
            with self._cond:
                self.opening -= 1
                self._cond.notify_all()
            raise
        entry = Entry(key, conn, threading.BoundedSemaphore(self.max_sessions), leases=1)
        old: Entry | None = None
        with self._cond:
            self.opening -= 1
            self.stats.opened += 1
            if self.enabled:
                old = self.entries.get(key)  # another lease opened one meanwhile: the newer one is kept
                if old is not None and old.leases > 0:
                    old.dead, old = True, None  # closed when its last lease ends
                self.entries[key] = entry
                self._start_reaper()
        if old is not None:
            old.conn.close()
        return entry

    def _give_back(self, entry: Entry) -> None:
        close = False
        with self._cond:
            entry.leases -= 1
            entry.idle_since = time.monotonic()
            current = self.entries.get(entry.key) is entry
            if entry.leases == 0 and (entry.dead or not self.enabled or not current):
                if current:
                    del self.entries[entry.key]
                close = True
            self._cond.notify_all()
        if close:
            entry.conn.close()

    def _drop(self, entry: Entry, replaced: bool = False) -> None:
        """`entry` is dead: no new lease gets it; the lease that found it gives it up (closed when unused)."""
        with self._cond:
            entry.dead = True
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
            if replaced:
                self.stats.replaced += 1
        self._give_back(entry)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, name="ssh-pool-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        every = max(0.05, min(self.idle_seconds / 4, 5.0))
        while not self._closed.wait(every):
            self.reap()

    def reap(self) -> int:
        """Close the connections idle for CARPWEB_SSH_IDLE_SECONDS or more; how many were closed."""
        now = time.monotonic()
        with self._cond:
            old = [e for e in self.entries.values() if e.leases == 0 and now - e.idle_since >= self.idle_seconds]
            for e in old:
                del self.entries[e.key]
            self.stats.closed_idle += len(old)
            self._cond.notify_all()
        for e in old:
            e.conn.close()
        return len(old)

    def close(self) -> None:
        """Close every idle connection and stop the reaper (leased ones close when given back)."""
        self._closed.set()
        with self._cond:
            idle = [e for e in self.entries.values() if e.leases == 0]
            for e in self.entries.values():
                e.dead = True
            self.entries.clear()
        for e in idle:
            e.conn.close()


class Lease:
    """One run's use of a pooled connection to one server: what execution calls its transport."""

    def __init__(self, pool: Pool, ep: Endpoint, entry: Entry) -> None:
        self.pool, self.ep, self.entry = pool, ep, entry
        self.closed = False
        self._lock = threading.Lock()

    def _channel[T](self, work: Callable[[Conn], T]) -> T:
        """`work` on the connection, inside its session bound; when the connection proves dead before anything
        was sent (kind "stale"), a new one is opened and `work` runs once more on it."""
        for attempt in (1, 2):
            with self._lock:
                if self.closed:
                    raise SSHError("unreachable", f"{self.ep.name}: the run's SSH session was closed.")
                entry = self.entry
            if not entry.sessions.acquire(timeout=self.pool.connect_timeout):
                raise SSHError("busy", f"{self.ep.name}: {self.pool.max_sessions} commands already run on its "
                               "SSH connection (CARPWEB_SSH_MAX_SESSIONS) and none ended within "
                               f"{self.pool.connect_timeout:g} s.")
            try:
                return work(entry.conn)
            except SSHError as e:
                if e.kind != "stale" or attempt == 2:
                    if e.kind == "stale":
                        raise SSHError("unreachable", e.message) from None
                    raise
            finally:
                entry.sessions.release()
            self._replace(entry)
        raise AssertionError("unreachable")  # pragma: no cover

    def _replace(self, entry: Entry) -> None:
        fresh = self.pool._open(self.ep, entry.key)
        with self._lock:
            self.entry = fresh
        self.pool._drop(entry, replaced=True)

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult:
        return self._channel(lambda c: c.run(command, stdin, timeout, on_line, name=self.ep.name))

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float) -> None:
        self._channel(lambda c: c.follow(command, on_line, idle_timeout, name=self.ep.name))

    def _end(self) -> Entry | None:
        """The lease's connection, the first time only (closing twice gives nothing back twice)."""
        with self._lock:
            if self.closed:
                return None
            self.closed = True
            return self.entry

    def close(self) -> None:
        """Give the connection back (it stays open for the next run unless the pool is off)."""
        entry = self._end()
        if entry is not None:
            self.pool._give_back(entry)

    def abort(self) -> None:
        """The run was stopped with a command maybe still waiting on the server: the connection is not given
        back to anyone else; closing it ends that command."""
        entry = self._end()
        if entry is not None:
            self.pool._drop(entry)


_pool: Pool | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def shared(opener: Opener) -> Pool:
    """This process's pool (a forked child gets its own: connections are never shared across processes)."""
    global _pool, _pool_pid
    from django.conf import settings

    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = Pool(opener, settings.CARPWEB_SSH_MAX_CONNECTIONS, settings.CARPWEB_SSH_IDLE_SECONDS,
                         settings.CARPWEB_SSH_MAX_SESSIONS, settings.CARPWEB_SSH_CONNECT_TIMEOUT)
            _pool_pid = os.getpid()
        return _pool


def reset() -> None:
    """Close this process's pool (tests, settings changes); the next `shared` builds a new one."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()
