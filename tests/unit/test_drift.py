"""Drift: what a scheduled run records, and only a scheduled one (a person named "scheduler" is a person)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.fakes import FakeWorld
from tests.helpers import make_cluster as cluster_row
from tests.unit.test_execution import configured, execute, make_cluster
from wizard import services
from wizard.models import AuditEntry, Cluster, Run, Server
from wizard.services import drift

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def test_a_scheduled_verify_that_finds_carp_unloaded_records_drift(world):
    cluster = make_cluster(world)
    assert execute(world, cluster, "prepare").status == Run.Status.OK
    world.hosts["server-1"].carp_loaded = False
    run = execute(world, cluster, "verify", trigger=Run.Trigger.SCHEDULE, actor_name=drift.SCHEDULER)
    assert run.status == Run.Status.FAILED
    entry = AuditEntry.objects.get(action="drift")
    findings = (entry.after or {})["findings"]
    assert entry.actor_name == "scheduler" and any("carp is not loaded on server-1" in f for f in findings)
    cluster.refresh_from_db()
    assert cluster.healthy is False and "carp is not loaded on server-1" in cluster.diagnosis
    world.hosts["server-1"].carp_loaded = True
    execute(world, cluster, "verify", trigger=Run.Trigger.SCHEDULE, actor_name=drift.SCHEDULER)
    cluster.refresh_from_db()
    assert cluster.healthy is None and cluster.diagnosis == ""  # a clean verify clears what the last one found


def test_a_person_named_scheduler_starts_ordinary_runs(world):
    cluster = make_cluster(world)
    person = User.objects.create_superuser("scheduler", password="a-long-password-1")
    run = services.run_start(cluster=cluster, kind="verify", user=person)
    assert run.trigger == Run.Trigger.USER and run.created_by == person
    services.run_execute(run_id=run.pk, connector=world.connect)  # fails: carp is not loaded
    assert not AuditEntry.objects.filter(action="drift").exists()
    assert Cluster.objects.get(pk=cluster.pk).healthy is None


def test_a_scheduled_check_records_a_master_that_moved(world, quick_carp):
    cluster = configured(world)
    execute(world, cluster, "check")
    world.hosts["server-1"].vhids[1].advskew = 150  # changed by hand on the server: server-2 (100) wins
    world.elect()
    execute(world, cluster, "check", trigger=Run.Trigger.SCHEDULE, actor_name=drift.SCHEDULER)
    findings = (AuditEntry.objects.get(action="drift").after or {})["findings"]
    assert findings == ["The master moved from server-1 to server-2.",
                        "server-1: /etc/rc.conf and the running advskew (150) of vhid 1 disagree."]


def test_findings_from_a_run_and_a_diagnosis():
    cluster = cluster_row(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    run = Run.objects.create(cluster=cluster, kind=Run.Kind.CHECK, trigger=Run.Trigger.SCHEDULE)
    run.steps.create(cluster_wide=True, position=0, phase="cluster", name="check", title="t", status="failed",
                     message="the check's own summary")
    server = Server.objects.create(cluster=cluster, name="cluster", address="192.0.2.11", ssh_host="h")
    run.steps.create(server=server, server_name="cluster", position=0, phase="connect", name="connect", title="t",
                     status="failed", message="cluster: cannot reach h:22")
    found = drift.findings(run, {"a": "MASTER", "b": "BACKUP"}, {"a": "BACKUP", "b": "MASTER"},
                           "Repaired a: demotion 240 -> 0.\nb has net.inet.carp.preempt=0: no failback.")
    assert found == ["The master moved from a to b.", "cluster: cannot reach h:22",
                     "b has net.inet.carp.preempt=0: no failback."]
