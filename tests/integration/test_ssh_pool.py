"""Warm SSH connections against the lab's real sshd: what a pooled connection may and may not be reused for."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from tests.helpers import lab_cluster, statuses, wait_run, wait_until
from wizard import services
from wizard.execution.connect import open_connection
from wizard.models import Run
from wizard.ssh import Endpoint, SSHError
from wizard.sshpool import Pool

pytestmark = pytest.mark.lab


def endpoint(lab, host: str = "server-1") -> Endpoint:
    """The host pinned to its key as the lab wrote it (read from its file: no connection of its own)."""
    with open(os.path.join(lab.hostdir(host), "ssh_host_ed25519_key.pub")) as f:
        key_type, b64 = f.read().split()[:2]
    with open(lab.key_path) as f:
        secret = f.read()
    return Endpoint(host, "127.0.0.1", lab.host(host).ssh_port, "root", "key", secret, "root", f"{key_type} {b64}")


def sessions(lab, host: str) -> set[str]:
    """The host's established SSH connections, as its own kernel sees them (peer address and port), less those
    that were there before the test (the lab's own)."""
    out = subprocess.run(["ip", "netns", "exec", lab.ns(host), "ss", "-Htn", "state", "established",
                          "( sport = :22 )"], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()} - BASELINE.get(host, set())


BASELINE: dict[str, set[str]] = {}


@pytest.fixture(autouse=True)
def baseline(fresh_lab):
    BASELINE.clear()
    for host in ("server-1", "server-2", "client"):
        BASELINE[host] = sessions(fresh_lab, host)
    yield
    BASELINE.clear()


def pool(limit: int = 8, idle: float = 120) -> Pool:
    return Pool(open_connection, limit, idle, max_sessions=8, connect_timeout=10)


def test_a_warm_connection_is_reused_and_a_changed_pin_never_is(fresh_lab):
    p, ep = pool(), endpoint(fresh_lab)
    with_key = p.lease(ep)
    assert with_key.run("hostname").ok
    with_key.close()
    before = sessions(fresh_lab, "server-1")
    again = p.lease(ep)
    assert again.run("id -u").stdout == "0\n"
    again.close()
    assert sessions(fresh_lab, "server-1") == before and len(before) == 1 and p.stats.opened == 1
    # Pinned to another host's key: a new connection is opened and refused, the warm one is not used.
    other = endpoint(fresh_lab, "server-2").pinned_key
    with pytest.raises(SSHError) as err:
        p.lease(replace(ep, pinned_key=other))
    assert err.value.kind == "hostkey" and "HOST KEY MISMATCH" in err.value.message
    # A new credential: a new connection too (the server refuses a wrong password; nothing is reused).
    with pytest.raises(SSHError) as err:
        p.lease(replace(ep, auth="password", secret="not-the-password"))
    assert err.value.kind == "auth" and p.stats.opened == 1 and p.stats.reused == 1
    p.close()


def test_a_node_restarted_between_two_runs_is_reconnected_without_an_error(fresh_lab):
    p, ep = pool(), endpoint(fresh_lab)
    p.lease(ep).close()
    fresh_lab.reboot("server-1")  # every connection to it ends
    lease = p.lease(ep)
    assert lease.run("uname -s").stdout == "FreeBSD\n"
    lease.close()
    assert p.stats.opened == 2 and p.stats.replaced == 1
    # Dead under a lease that is already held (no keepalive in between): the command's channel finds it.
    lease = p.lease(ep)
    fresh_lab.reboot("server-1")
    wait_until(lambda: not sessions(fresh_lab, "server-1"), limit=10)
    assert lease.run("uname -s").stdout == "FreeBSD\n"
    lease.close()
    assert p.stats.opened == 3 and p.stats.replaced == 2
    p.close()


def test_idle_connections_close(fresh_lab):
    p = pool(idle=0.5)
    p.lease(endpoint(fresh_lab)).close()
    assert len(sessions(fresh_lab, "server-1")) == 1
    wait_until(lambda: not sessions(fresh_lab, "server-1"), limit=10)
    assert p.size() == 0 and p.stats.closed_idle == 1


def test_the_pool_never_exceeds_its_bound(fresh_lab):
    p = pool(limit=1)
    eps = [endpoint(fresh_lab, h) for h in ("server-1", "server-2", "client")]
    for ep in eps * 2:
        lease = p.lease(ep)
        assert lease.run("true").ok
        lease.close()
        assert p.size() <= 1
        # On the hosts: the one evicted closes a moment later (the close travels through the lab's relay).
        wait_until(lambda: sum(len(sessions(fresh_lab, h)) for h in ("server-1", "server-2", "client")) <= 1,
                   limit=5, what="the hosts to see at most one connection")
    assert p.stats.peak == 1 and p.stats.evicted == 5
    p.close()


@pytest.mark.django_db(transaction=True)
def test_the_worker_keeps_a_checked_cluster_warm_and_reconnects_after_a_reboot(world):
    cluster = lab_cluster(world, configure_service_ip=True)
    assert wait_run(services.run_start(cluster=cluster, kind="setup")).status == Run.Status.OK
    warm = {h: sessions(world, h) for h in ("server-1", "server-2")}
    assert all(len(v) == 1 for v in warm.values()), warm  # the run ended; its connections stayed open
    check = wait_run(services.run_start(cluster=cluster, kind="check"))
    assert check.status == Run.Status.OK, check.summary
    assert {h: sessions(world, h) for h in warm} == warm  # the same connections, not new ones
    world.reboot("server-1")
    after = wait_run(services.run_start(cluster=cluster, kind="check"))
    assert statuses(after, "server-1")["connect"] == "ok", after.summary
    assert after.steps.filter(status="failed").count() == 0
    assert len(sessions(world, "server-1")) == 1 and sessions(world, "server-2") == warm["server-2"]
