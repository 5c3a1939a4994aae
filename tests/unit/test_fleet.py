"""Fleet runs (`carp_run --all`, Check all, the drift pass) over fake transports, with a fake worker: a thread per
published run, as the thread pool runs them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from carpweb.celery import app
from tests.fakes import FakeWorld
from tests.unit.test_execution import make_cluster
from wizard import services
from wizard.execution import runner
from wizard.execution.slots import Slots
from wizard.models import Cluster, Run, Server
from wizard.ssh import SSHError

pytestmark = pytest.mark.django_db(transaction=True)


class Fleet:
    """One fake segment per cluster, and a fake worker that executes each published run in its own thread."""

    def __init__(self) -> None:
        self.worlds: dict[int, FakeWorld] = {}
        self.threads: list[threading.Thread] = []
        self.hold = threading.Event()  # cleared: runs of the clusters in `held` wait (the cluster stays busy)
        self.hold.set()
        self.held: set[int] = set()
        self.direct = False  # the caller executes the runs it starts: the fake worker leaves them alone

    def connect(self, server: Server):  # type: ignore[no-untyped-def]
        return self.worlds[server.cluster_id].connect(server)

    def cluster(self, name: str, *, kind: str | None = "configure") -> Cluster:
        world = FakeWorld()
        cluster = make_cluster(world, name=name)
        self.worlds[cluster.pk] = world
        if kind:
            self.direct = True
            try:
                run = services.run_start(cluster=cluster, kind=kind)
            finally:
                self.direct = False
            assert services.run_execute(run_id=run.pk, connector=world.connect).status == Run.Status.OK
        return cluster

    def send_task(self, name: str, args=None, **kw) -> None:  # type: ignore[no-untyped-def]
        if self.direct:
            return
        def work() -> None:
            if Run.objects.get(pk=args[0]).cluster_id in self.held:
                self.hold.wait(30)
            services.run_execute(run_id=args[0], connector=self.connect)

        thread = threading.Thread(target=work)
        thread.start()
        self.threads.append(thread)


@pytest.fixture
def fleet(monkeypatch) -> Iterator[Fleet]:
    f = Fleet()
    monkeypatch.setattr(app, "send_task", f.send_task)
    yield f
    f.hold.set()
    for t in f.threads:
        t.join(30)


def test_check_all_runs_where_it_applies_prints_each_and_exits_0(fleet, capsys):
    for name in ("a-web", "b-db"):
        fleet.cluster(name)
    fleet.cluster("c-new", kind=None)  # never prepared, VIP not configured: Check does not apply
    call_command("carp_run", "--all", "check", "--wait", "--timeout", "60")
    out = capsys.readouterr().out
    assert "c-new" in out and "skipped  not checked: its service IP is not configured" in out
    assert sum(line.split()[1:2] == ["ok"] for line in out.splitlines()) == 2  # one line per cluster as it ended
    assert "total: 2 run(s): 2 ok; 0 busy; 1 skipped" in out
    assert set(Run.objects.filter(kind="check").values_list("trigger", flat=True)) == {Run.Trigger.FLEET}


def test_verify_all_needs_a_prepared_cluster(fleet, capsys):
    fleet.cluster("a-web", kind="setup")
    fleet.cluster("b-new", kind=None)
    call_command("carp_run", "--all", "verify", "--wait", "--timeout", "60")
    out = capsys.readouterr().out
    assert "b-new" in out and "never prepared" in out and "total: 1 run(s): 1 ok; 0 busy; 1 skipped" in out


def test_a_failed_run_or_a_busy_cluster_makes_the_exit_status_non_zero(fleet, capsys):
    web, db = fleet.cluster("a-web"), fleet.cluster("b-db")
    fleet.worlds[web.pk].refuse["server-1"] = SSHError("unreachable", "server-1: cannot reach")  # a-web fails
    fleet.hold.clear()
    fleet.held.add(db.pk)
    busy = services.run_start(cluster=db, kind="verify")  # b-db is busy and stays so: its run waits
    with pytest.raises(CommandError, match="not every cluster's run was ok"):
        call_command("carp_run", "--all", "check", "--wait", "--timeout", "60")
    out = capsys.readouterr().out
    assert "b-db" in out and "busy" in out and f"{busy} is still in progress" in out
    assert "total: 1 run(s): 1 failed; 1 busy; 0 skipped" in out
    with pytest.raises(CommandError, match="1 cluster\\(s\\) busy"):  # without --wait: busy is still a failure
        call_command("carp_run", "--all", "check")
    fleet.hold.set()


def test_only_check_and_verify_run_fleet_wide(fleet):
    with pytest.raises(CommandError, match="cannot run on every cluster"):
        call_command("carp_run", "--all", "drill")
    with pytest.raises(CommandError, match="give only the kind"):
        call_command("carp_run", "--all", "check", "web")


def test_the_drift_pass_never_overlaps_a_running_one(fleet):
    web, db = fleet.cluster("a-web"), fleet.cluster("b-db", kind="setup")
    fleet.hold.clear()
    fleet.held.update({web.pk, db.pk})
    first = services.drift_check_all()
    assert sorted(Run.objects.filter(pk__in=first).values_list("cluster__name", "kind")) == [
        ("a-web", "check"), ("b-db", "verify")]
    assert services.drift_check_all() == []  # the first pass is still running: no second one
    fleet.hold.set()
    for t in fleet.threads:
        t.join(30)
    assert set(Run.objects.filter(pk__in=first).values_list("status", flat=True)) == {Run.Status.OK}
    assert len(services.drift_check_all()) == 2  # the pass ended: the next one starts


def test_check_all_button_is_for_operators(fleet, client, django_user_model):
    from django.contrib.auth.models import Group

    fleet.cluster("a-web")
    viewer = django_user_model.objects.create_user("vera", password="pw-long-enough-1")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client.force_login(viewer)
    assert client.post("/clusters/check-all/").status_code == 403
    operator = django_user_model.objects.create_user("otto", password="pw-long-enough-1")
    operator.groups.add(Group.objects.get_or_create(name="operator")[0])
    client.force_login(operator)
    unpinned = fleet.cluster("z-new", kind=None)
    Cluster.objects.filter(pk=unpinned.pk).update(service_ip_configured=True)
    Server.objects.filter(cluster=unpinned, name="server-2").update(host_key="")
    text = client.post("/clusters/check-all/", follow=True).content.decode()
    assert "Check started on 1 cluster(s). Not ready to run (servers or host keys to confirm): z-new." in text
    assert Run.objects.filter(kind="check", trigger=Run.Trigger.FLEET, created_by=operator).count() == 1


def test_a_run_waits_for_ssh_slots_and_fails_with_a_reason_when_none_come_free(fleet, monkeypatch, settings):
    cluster = fleet.cluster("a-web")
    fleet.direct = True
    slots = Slots(3)
    monkeypatch.setattr(runner, "SLOTS", slots)
    assert slots.acquire(2, timeout=0) == 2  # another run holds 2 of the 3: this one needs 2
    settings.CARPWEB_RUN_TIMEOUT = 0.5
    run = services.run_start(cluster=cluster, kind="check")
    done = services.run_execute(run_id=run.pk, connector=fleet.connect)
    assert done.status == Run.Status.FAILED and "no SSH connection came free" in done.summary
    slots.release(2)
    settings.CARPWEB_RUN_TIMEOUT = 60
    run = services.run_start(cluster=cluster, kind="check")
    assert services.run_execute(run_id=run.pk, connector=fleet.connect).status == Run.Status.OK
    assert slots.used == 0 and slots.peak == 2


def test_slots_bound_the_connections_and_a_wide_run_takes_the_whole_limit():
    slots = Slots(4)
    assert slots.acquire(10, timeout=0) == 4 and slots.acquire(1, timeout=0.05) == 0
    released = threading.Timer(0.1, slots.release, args=(4,))
    released.start()
    assert slots.acquire(3, timeout=5) == 3  # woken when the other run gave its slots back
    assert slots.used == 3 and slots.peak == 4
