"""The warm-connection pool's rules over stand-in connections (no SSH): keys, the bound, idle closing, reuse
checks and replacement. tests/integration/test_ssh_pool.py holds the same rules against the lab's sshd."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from carpweb.waiting import wait_until
from wizard.carp.facts import CommandResult
from wizard.ssh import Endpoint, SSHError
from wizard.sshpool import KEEPALIVE_AFTER, Pool

EP = Endpoint("server-1", "127.0.0.1", 2201, "root", "key", "SECRET-1", "root", "ssh-ed25519 AAAA1")


class Conn:
    def __init__(self, ep: Endpoint, log: list[Conn]) -> None:
        self.ep, self.closed, self.dead, self.commands = ep, False, False, 0
        self.reset = False  # closed by the server, and seen so (no round trip needed)
        self.busy = 0
        self.peak_busy = 0
        self.probes = 0
        log.append(self)

    def run(self, command, stdin=None, timeout=None, on_line=None, name=None) -> CommandResult:
        if self.dead or self.closed or self.reset:
            raise SSHError("stale", f"{name}: the SSH connection broke")
        self.busy += 1
        self.peak_busy = max(self.peak_busy, self.busy)
        if command.startswith("sleep "):
            time.sleep(float(command.split()[1]))
        self.busy -= 1
        self.commands += 1
        return CommandResult(0, f"{name} ran {command}\n", "", 0.0)

    def follow(self, command, on_line, idle_timeout, name=None) -> None:
        self.run(command, name=name)

    def is_open(self) -> bool:
        return not self.closed and not self.reset

    def alive(self, timeout: float) -> bool:
        self.probes += 1
        return not self.dead and not self.closed and not self.reset

    def close(self) -> None:
        self.closed = True


def make_pool(limit: int = 4, idle: float = 120, sessions: int = 8) -> tuple[Pool, list[Conn]]:
    opened: list[Conn] = []
    return Pool(lambda ep: Conn(ep, opened), limit, idle, sessions, connect_timeout=0.5), opened


def test_a_second_lease_reuses_the_connection_and_a_credential_or_pin_change_never_does():
    pool, opened = make_pool(limit=10)
    pool.lease(EP).close()
    lease = pool.lease(EP)
    assert lease.run("true").stdout == "server-1 ran true\n"
    lease.close()
    assert len(opened) == 1 and pool.stats.reused == 1
    for changed in (replace(EP, secret="SECRET-2"), replace(EP, pinned_key="ssh-ed25519 BBBB2"),
                    replace(EP, user="carpadm"), replace(EP, privilege="sudo"), replace(EP, port=2202)):
        pool.lease(changed).close()
    assert len(opened) == 6 and all(c.ep.pinned_key for c in opened)
    assert opened[2].ep.pinned_key == "ssh-ed25519 BBBB2"
    pool.lease(replace(EP, name="web-1")).close()  # another cluster's server on the same endpoint: shared
    assert len(opened) == 6


def test_the_bound_closes_the_oldest_idle_connection_and_is_never_exceeded():
    pool, opened = make_pool(limit=3)
    for port in range(3000, 3010):
        pool.lease(replace(EP, port=port)).close()
        assert pool.size() <= 3
    assert pool.stats.peak == 3 and pool.stats.evicted == 7
    assert [c.closed for c in opened] == [True] * 7 + [False] * 3


def test_when_every_connection_is_in_use_a_new_one_waits_then_fails_plainly():
    pool, _ = make_pool(limit=2)
    held = [pool.lease(replace(EP, port=p)) for p in (1, 2)]
    t0 = time.monotonic()
    with pytest.raises(SSHError) as err:
        pool.lease(replace(EP, port=3))
    assert err.value.kind == "busy" and "CARPWEB_SSH_MAX_CONNECTIONS=2" in err.value.message
    assert 0.4 < time.monotonic() - t0 < 2
    threading.Timer(0.1, held[0].close).start()  # one given back meanwhile: the wait ends with it
    pool.lease(replace(EP, port=3)).close()
    assert pool.size() == 2


def test_idle_connections_close_after_the_idle_time():
    pool, opened = make_pool(idle=0.3)
    pool.lease(EP).close()
    busy = pool.lease(replace(EP, port=9))
    wait_until(lambda: opened[0].closed, 5, "the idle connection to close", every=0.02)
    assert not opened[1].closed  # a leased one is never closed under its run
    busy.close()
    assert pool.stats.closed_idle >= 1
    pool.close()


def test_zero_idle_seconds_is_no_pool():
    pool, opened = make_pool(idle=0)
    pool.lease(EP).close()
    pool.lease(EP).close()
    assert len(opened) == 2 and all(c.closed for c in opened) and pool.size() == 0


def test_a_dead_connection_is_replaced_within_the_same_command():
    pool, opened = make_pool()
    lease = pool.lease(EP)
    opened[0].dead = True  # the node rebooted under the warm connection
    assert lease.run("true").stdout == "server-1 ran true\n"
    assert len(opened) == 2 and opened[0].closed and pool.stats.replaced == 1
    lease.close()
    pool.lease(EP).close()
    assert len(opened) == 2  # the new one is the warm one now


def test_a_connection_idle_for_a_while_is_checked_before_reuse(monkeypatch):
    pool, opened = make_pool()
    pool.lease(EP).close()
    pool.lease(EP).close()
    assert opened[0].probes == 0  # just given back: no keepalive needed
    pool.entries[next(iter(pool.entries))].idle_since -= KEEPALIVE_AFTER
    opened[0].dead = True
    lease = pool.lease(EP)
    assert opened[0].probes == 1 and len(opened) == 2 and lease.entry.conn is opened[1]
    lease.close()


def test_runs_share_a_connection_up_to_the_session_bound():
    pool, opened = make_pool(sessions=2)
    leases = [pool.lease(EP) for _ in range(4)]
    threads = [threading.Thread(target=lease.run, args=("sleep 0.2",)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 1 and opened[0].commands == 4 and opened[0].peak_busy == 2


def test_an_aborted_lease_closes_its_connection_once_nobody_uses_it():
    pool, opened = make_pool()
    a, b = pool.lease(EP), pool.lease(EP)
    a.abort()
    assert not opened[0].closed  # b's command may still be running on it
    b.close()
    assert opened[0].closed
    pool.lease(EP).close()
    assert len(opened) == 2
    with pytest.raises(SSHError, match="was closed"):
        a.run("true")


def test_a_connection_the_server_closed_is_never_handed_out():
    pool, opened = make_pool()
    pool.lease(EP).close()
    opened[0].reset = True  # the node rebooted a moment ago: no keepalive is due yet, but it is seen closed
    lease = pool.lease(EP)
    assert opened[0].probes == 0 and lease.entry.conn is opened[1] and pool.stats.replaced == 1
    lease.close()
