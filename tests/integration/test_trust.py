"""Trust boundaries on the lab: another vhid's password on a node reaches no viewer, and a hostile node cannot
exhaust the worker."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.helpers import lab_cluster, wait_run
from wizard import crypto, revisions, services
from wizard.live import feeds
from wizard.models import AuditEntry, Run, Step

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
FOREIGN = "Foreign7Secret"  # noqa: S105 - a password carpweb does not manage, on both nodes
FOREIGN_LINE = f'ifconfig_em0_alias0="inet vhid 77 advskew 0 pass {FOREIGN} alias 192.0.2.177/32"'


def _run(cluster, kind, limit=120):
    return wait_run(services.run_start(cluster=cluster, kind=kind), limit=limit)


def _everything_a_viewer_sees(runs: list[Run]) -> str:
    viewer = User.objects.create_user("viewer-a", password="pw-for-tests-1")
    viewer.groups.set([Group.objects.get_or_create(name="viewer")[0]])
    client = Client()
    client.force_login(viewer)
    seen = []
    for run in runs:
        seen.append(client.get(f"/runs/{run.pk}/").content.decode())
        seen.append(client.get(f"/runs/{run.pk}/?format=fragments&after=0").content.decode())
        seen.extend(e.data for e in feeds.run_events(run.pk, 0, revisions.current()))
    seen.append(client.get(f"/clusters/{runs[0].cluster_id}/").content.decode())
    seen.append(b"".join(client.get("/audit/?format=json").streaming_content).decode())  # type: ignore[attr-defined]
    return "\n".join(seen)


def test_another_vhids_password_and_an_old_password_reach_no_viewer(world, celery_worker_process):
    for host in ("server-1", "server-2"):
        world.exec(host, ["sh", "-c", f"echo '{FOREIGN_LINE}' >> /etc/rc.conf"], check=True)
    cluster = lab_cluster(world, probe=True, configure_service_ip=True, password="FirstCarpPass1")
    runs = [_run(cluster, "setup")]
    assert runs[0].status == Run.Status.OK, list(runs[0].steps.filter(status="failed").values_list("message"))
    # A password change: sysrc would print `OLD -> NEW`, and OLD is no longer a secret the run knows of.
    cluster.service_ips.update(password_enc=crypto.encrypt("SecondCarpPass2"))
    runs.append(_run(cluster, "configure"))
    assert runs[-1].status == Run.Status.OK
    for kind in ("check", "drill", "remove", "remove"):
        runs.append(_run(cluster, kind))
        assert runs[-1].status == Run.Status.OK, (kind, list(runs[-1].steps.filter(status="failed")
                                                              .values_list("message")))
    assert world.exec("server-1", ["sysrc", "-n", "ifconfig_em0_alias0"]).stdout.split()[6] == FOREIGN  # untouched
    rows = json.dumps(list(Step.objects.filter(run__cluster=cluster).values()), default=str)
    audit = json.dumps(list(AuditEntry.objects.values()), default=str)
    pages = _everything_a_viewer_sees(runs)
    log = celery_worker_process.log.read_text()
    for secret in (FOREIGN, "FirstCarpPass1", "SecondCarpPass2"):
        for where, text in (("step rows", rows), ("audit", audit), ("pages and streams", pages), ("worker log", log)):
            assert secret not in text, (secret, where)
    # What the rows keep of a read of /etc/rc.conf: the verdict and the size, not the text.
    kept = Step.objects.filter(run=runs[-1], name="vip-remove-persist:em0:1").values_list("stdout_tail", flat=True)
    assert all("/etc/rc.conf read; not kept" in text for text in kept)


def _peak_rss_during(pid: int, work) -> tuple[int, int, object]:
    """(RSS before in KB, peak RSS while `work` ran, its result), sampled every 20 ms from /proc."""
    def rss() -> int:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    before, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return before, peak[0], result


RSS_BOUND_KB = 64 * 1024  # what a hostile node may add to the worker's memory, at most


@pytest.mark.parametrize("megabytes", [200, 0], ids=["200-MB-of-output", "an-endless-line"])
def test_a_hostile_node_cannot_exhaust_the_worker(world, celery_worker_process, megabytes):
    cluster = lab_cluster(world)
    world.fault("server-1", "flood", "uname", str(megabytes))
    started = time.monotonic()
    before, peak, run = _peak_rss_during(celery_worker_process.pid, lambda: _run(cluster, "preflight", limit=60))
    took = time.monotonic() - started
    assert isinstance(run, Run) and run.status == Run.Status.FAILED
    step = run.steps.get(server_name="server-1", name="freebsd")
    assert step.status == Step.Status.FAILED and "more than 8 MiB of output" in step.message, step.message
    assert run.steps.get(server_name="server-2", name="freebsd").status == Step.Status.OK
    assert peak - before < RSS_BOUND_KB, (before, peak)
    assert took < 30, took
    assert len(step.stdout_tail) <= 4000
