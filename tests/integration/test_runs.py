"""The wizard's runs end to end: a real Celery worker process, the lab's real sshd, real paramiko."""


import pytest

from tests.helpers import lab_cluster, messages, statuses, wait_run, wait_until
from wizard import services, tasks
from wizard.models import AuditEntry, Run

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]



def test_fresh_cluster_all_green_then_rerun_changes_nothing(world):
    cluster = lab_cluster(world, users=("root", "carpadm"), privileges=("root", "sudo"))
    run = wait_run(services.run_start(cluster=cluster, kind="setup"))
    assert run.status == Run.Status.OK, run.summary
    for server in ("server-1", "server-2"):
        st = statuses(run, server)
        assert st["loader-conf"] == st["kldload"] == "changed"
        assert {st[k] for k in st if k not in ("loader-conf", "kldload")} == {"ok"}
    assert world.exec("server-2", ["sysrc", "-f", "/boot/loader.conf", "-n", "carp_load"]).stdout == "YES\n"
    again = wait_run(services.run_start(cluster=cluster, kind="setup"))
    assert again.status == Run.Status.OK
    assert again.steps.filter(status="changed").count() == 0
    assert again.summary == "nothing to change"
    assert any("kldstat -q -m carp" in line for line in world.log("server-1"))

    def both_audited() -> list[str] | None:  # the worker audits a run's end just after its status flips
        actions = list(AuditEntry.objects.filter(cluster_name="web").values_list("action", flat=True))
        return actions if actions.count("run.finish") == 2 else None

    actions = wait_until(both_audited, limit=10)
    assert actions.count("hostkey.pin") == 2 and actions.count("run.start") == 2 and actions.count("run.finish") == 2
    finish = AuditEntry.objects.filter(action="run.finish").first()
    assert finish is not None and finish.after is not None
    assert finish.link == f"/runs/{again.pk}/" and finish.after["status"] == "ok"


def test_scheduled_check_reports_drift_when_carp_is_unloaded(world):
    cluster = lab_cluster(world)
    assert wait_run(services.run_start(cluster=cluster, kind="setup")).status == Run.Status.OK
    world.exec("server-1", ["kldunload", "carp"], check=True)
    tasks.drift_check_all.delay()  # what celery beat sends, through the real broker to the real worker
    run = wait_run(wait_until(lambda: Run.objects.filter(trigger=Run.Trigger.SCHEDULE).first()))
    assert run.kind == "verify" and run.status == Run.Status.FAILED
    entry = wait_until(lambda: AuditEntry.objects.filter(action="drift").first(), limit=10)
    assert entry.actor_name == "scheduler" and entry.cluster_name == "web"
    assert entry.after is not None and any("carp is not loaded on server-1" in f for f in entry.after["findings"])
    cluster.refresh_from_db()
    assert cluster.healthy is False and "carp is not loaded on server-1" in cluster.diagnosis


def test_second_run_refused_while_one_is_in_progress(world):
    cluster = lab_cluster(world)
    first = services.run_start(cluster=cluster, kind="setup")
    with pytest.raises(services.ServiceError, match="still in progress"):
        services.run_start(cluster=cluster, kind="verify")
    wait_run(first)


def test_host_key_mismatch_blocks_run_with_zero_commands(world):
    cluster = lab_cluster(world)
    world.fault("server-1", "hostkey-change")
    world.clear_log("server-1")
    run = wait_run(services.run_start(cluster=cluster, kind="setup"))
    assert run.status == Run.Status.FAILED
    assert statuses(run, "server-1")["connect"] == "failed"
    assert "HOST KEY MISMATCH" in messages(run, "server-1")
    assert "man-in-the-middle" in messages(run, "server-1")
    assert world.log("server-1") == []  # not one command reached the host
    assert set(statuses(run, "server-2").values()) <= {"ok", "changed"}  # the other server still finished


@pytest.mark.parametrize(("fault", "expect"), [
    ("sshd-stop", "cannot reach"),
    ("sshd-hang", "did not complete an SSH handshake"),
    ("linux", "not FreeBSD"),
])
def test_server_faults_fail_their_step_with_a_sentence(world, fault, expect):
    cluster = lab_cluster(world)
    world.fault("server-1", fault)
    run = wait_run(services.run_start(cluster=cluster, kind="setup"), limit=40)
    assert run.status == Run.Status.FAILED
    assert expect in messages(run, "server-1")
    assert "failed" in statuses(run, "server-1").values()
    assert set(statuses(run, "server-2").values()) <= {"ok", "changed"}


def test_refused_password(world):
    cluster = lab_cluster(world, passwords=("wrong-password", None))
    run = wait_run(services.run_start(cluster=cluster, kind="preflight"))
    assert "refused the password" in messages(run, "server-1")


def test_password_login_works(world):
    cluster = lab_cluster(world, passwords=("carplab-root", None))
    assert wait_run(services.run_start(cluster=cluster, kind="preflight")).status == Run.Status.OK


def test_sudo_that_wants_a_password(world):
    cluster = lab_cluster(world, users=("carpask", "root"), privileges=("sudo", "root"))
    run = wait_run(services.run_start(cluster=cluster, kind="preflight"))
    assert statuses(run, "server-1")["privilege"] == "failed"
    assert "asks for a password" in messages(run, "server-1")


def test_missing_interface(world):
    cluster = lab_cluster(world, interface="em9")
    run = wait_run(services.run_start(cluster=cluster, kind="preflight"))
    assert "Interface em9 does not exist on server-1; it has: em0 lo0" in messages(run, "server-1")


def test_address_outside_the_subnet(world):
    cluster = lab_cluster(world, subnet="192.0.2.0/25")
    run = wait_run(services.run_start(cluster=cluster, kind="preflight"))
    assert "not in the cluster's subnet 192.0.2.0/25" in messages(run, "server-1")


def test_unpinned_host_key_is_never_trusted(world):
    cluster = lab_cluster(world, pin=False)
    with pytest.raises(services.ServiceError, match="Confirm the host keys"):
        services.run_start(cluster=cluster, kind="setup")
