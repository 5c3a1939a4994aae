"""Issue 6 on the lab: worker faults, duplicate deliveries, a slow lossy link, a link cut mid-run, re-pinning."""

import os
import signal
import threading
import time

import pytest

from tests.conftest import start_worker
from tests.helpers import lab_cluster, wait_run, wait_until
from wizard import services, tasks
from wizard.models import AuditEntry, Run, Step

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True)]



def test_killed_worker_marks_run_interrupted_within_60s_and_rerun_converges(world, tmp_path):
    cluster = lab_cluster(world)
    world.fault("server-1", "netem", "200", "0")  # slow enough to kill it mid-run
    killer = start_worker(tmp_path / "doomed.log", "doomed", "-Q", "doomed", "-c", "1")
    run = Run.objects.create(cluster=cluster, kind="setup", created_by_name="test")
    tasks.run_execute.apply_async((run.pk,), queue="doomed")
    assert wait_until(lambda: Step.objects.filter(run=run, status__in=["ok", "changed"]).count() >= 3)
    os.killpg(killer.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    killer.wait(10)

    def interrupted():
        services.runs_reap()  # what the beat schedule runs every 15 s
        return Run.objects.get(pk=run.pk).status == Run.Status.INTERRUPTED

    assert wait_until(interrupted, limit=60, every=1)
    assert time.monotonic() - killed_at <= 60
    run.refresh_from_db()
    assert "interrupted" in run.summary
    assert not run.steps.filter(status__in=["pending", "running"]).exists()
    world.fault("server-1", "clear")
    again = wait_run(services.run_start(cluster=cluster, kind="setup"))
    assert again.status == Run.Status.OK
    assert AuditEntry.objects.filter(action="run.interrupted", object_id=str(run.pk)).exists()


def test_run_time_limit_stops_a_run_that_takes_too_long(world, tmp_path):
    cluster = lab_cluster(world)
    world.fault("server-1", "netem", "300", "0")
    limited = start_worker(tmp_path / "limited.log", "limited", "-Q", "limited", "-c", "1",
                           env={"CARPWEB_RUN_TIMEOUT": "4"})
    try:
        run = Run.objects.create(cluster=cluster, kind="setup", created_by_name="test")
        started = time.monotonic()
        tasks.run_execute.apply_async((run.pk,), queue="limited")
        wait_run(run, limit=60)
        assert run.status == Run.Status.FAILED
        assert "CARPWEB_RUN_TIMEOUT (4 s)" in run.summary
        assert time.monotonic() - started < 30
        assert wait_until(lambda: not run.steps.filter(status__in=["pending", "running"]).exists(), limit=20)
    finally:
        limited.stop(grace=20)


def test_two_workers_and_duplicate_messages_never_run_a_run_twice(world, tmp_path, celery_worker_process):
    cluster = lab_cluster(world)
    second = start_worker(tmp_path / "second.log", "second", "-c", "2")
    logs = [celery_worker_process.log, tmp_path / "second.log"]
    offsets = {log: len(log.read_text()) for log in logs}

    def deliveries_handled() -> int:
        return sum(1 for log in logs for line in log.read_text()[offsets[log]:].splitlines()
                   if "Task wizard.run_execute[" in line and " succeeded in " in line)

    try:
        run = Run.objects.create(cluster=cluster, kind="verify", created_by_name="test")
        for _ in range(4):  # a redelivery storm: every copy races for the same run
            tasks.run_execute.delay(run.pk)
        wait_run(run)
        wait_until(lambda: deliveries_handled() >= 4)  # every copy arrived and found the run claimed
        assert AuditEntry.objects.filter(action="run.finish", object_id=str(run.pk)).count() == 1
        planned = 2 * (1 + 3)  # connect + three verify steps per server
        assert run.steps.count() == planned
    finally:
        second.stop(grace=20)


def test_slow_lossy_link_still_completes(world):
    cluster = lab_cluster(world)
    for host in ("server-1", "server-2"):
        world.fault(host, "netem", "300", "5")
    t0 = time.monotonic()
    run = wait_run(services.run_start(cluster=cluster, kind="setup"), limit=240)
    elapsed = time.monotonic() - t0
    assert run.status == Run.Status.OK, [s.message for s in run.steps.filter(status="failed")]
    assert elapsed > 3  # the delay was really there
    print(f"setup over 300 ms delay + 5% loss: {elapsed:.1f} s")


def test_link_cut_mid_run_leaves_files_whole_and_rerun_converges(world):
    cluster = lab_cluster(world)
    assert wait_run(services.run_start(cluster=cluster, kind="prepare")).status == Run.Status.OK
    world.fault("server-1", "netem", "150", "0")
    run = services.run_start(cluster=cluster, kind="configure")

    def cut():
        wait_until(lambda: Step.objects.filter(run=run, server_name="server-1", name="preempt",
                                               status="changed").exists(), limit=60, every=0.01)
        world.fault("server-1", "link-down")

    cutter = threading.Thread(target=cut)
    cutter.start()
    wait_run(run, limit=120)
    cutter.join()
    assert run.status == Run.Status.FAILED
    rc = world.exec("server-1", ["cat", "/etc/rc.conf"]).stdout
    sysctl_conf = world.exec("server-1", ["cat", "/etc/sysctl.conf"]).stdout
    alias = [line for line in rc.splitlines() if line.startswith("ifconfig_em0_alias")]
    assert alias == [] or (len(alias) == 1 and alias[0].endswith('alias 192.0.2.100/32"'))  # old or new, whole
    assert sysctl_conf.startswith("# $FreeBSD$") and sysctl_conf.count("net.inet.carp.preempt") <= 1
    leftovers = world.exec("server-1", ["sh", "-c", "ls -a /etc | grep -c '^sysctl.conf.[A-Za-z0-9]\\{6\\}$' || true"])
    assert leftovers.stdout.strip() == "0"  # no half-written temp file left in place of the real one
    world.fault("server-1", "clear")
    again = wait_run(services.run_start(cluster=cluster, kind="configure"), limit=90)
    assert again.status == Run.Status.OK, [s.message for s in again.steps.filter(status="failed")]
    backups = world.exec("server-1", ["sh", "-c", "ls /etc/rc.conf.carpweb-* /etc/sysctl.conf.carpweb-*"]).stdout
    assert "rc.conf.carpweb-" in backups and "sysctl.conf.carpweb-" in backups


def test_host_key_mismatch_is_audited_and_only_an_explicit_repin_accepts_the_new_key(world):
    cluster = lab_cluster(world)
    world.fault("server-2", "hostkey-change")
    run = wait_run(services.run_start(cluster=cluster, kind="verify"))
    assert run.status == Run.Status.FAILED
    assert AuditEntry.objects.filter(action="hostkey.mismatch", object_repr="server-2").exists()
    offers = {o.server.name: o for o in services.host_keys_fetch(cluster=cluster)}
    new = {offers["server-2"].server.pk: offers["server-2"].fingerprint}
    with pytest.raises(services.ServiceError, match="only an admin can re-pin"):
        services.host_keys_pin(cluster=cluster, confirmed=new)
    services.host_keys_pin(cluster=cluster, confirmed=new, repin=True)
    assert AuditEntry.objects.filter(action="hostkey.repin", object_repr="server-2").exists()
    after = wait_run(services.run_start(cluster=cluster, kind="preflight"))
    assert after.status == Run.Status.OK, [s.message for s in after.steps.filter(status="failed")]
