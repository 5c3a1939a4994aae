"""CARP transitions without the lab: the node's log lines and the collector's command (run here, with sh, awk
and tail, on a temporary log), the devd rule's steps on fake hosts, recording each line once, judging a cluster
for notices, the collector on a fake transport."""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tests.fakes import FakeWorld
from tests.helpers import make_cluster, wait_until
from tests.unit.test_execution import configured, execute
from wizard import services
from wizard.carp import transition_log
from wizard.execution.collector import Callbacks, Collector
from wizard.management.commands.carp_collect import callbacks
from wizard.models import AuditEntry, CarpEvent, Cluster, Delivery, Drill, Notice, Run, Server, ServiceIP
from wizard.services import drift
from wizard.services import transitions as event_services
from wizard.timeline import cluster_timeline

LINE = "3f9a0c11d2e4 7 2026-11-25T03:12:09Z 1@em0 BACKUP -> MASTER (master timed out)"


def _line(seq: int, new: str, old: str = "BACKUP", epoch: str = "e1", vhid: int = 1, reason: str = "r") -> str:
    return f"{epoch} {seq} 2026-11-25T03:12:{seq % 60:02d}Z {vhid}@em0 {old} -> {new} ({reason})"


def test_a_logged_line_is_parsed_and_anything_else_is_not():
    assert transition_log.parse_line(LINE) == transition_log.NodeEvent(
        "3f9a0c11d2e4", 7, datetime(2026, 11, 25, 3, 12, 9, tzinfo=UTC), 1, "em0", "BACKUP", "MASTER",
        "master timed out")
    assert transition_log.parse_line(transition_log.HEARTBEAT) is None
    assert transition_log.parse_line("Nov 25 03:12:09 server-1 kernel: carp: 1@em0: BACKUP -> MASTER") is None
    no_clock = transition_log.parse_line(LINE.replace("2026-11-25T03:12:09Z", "-"))
    assert no_clock is not None and no_clock.node_time is None
    assert transition_log.parse_line(LINE.replace("(master timed out)", "()")).reason == ""  # type: ignore[union-attr]


def _follow_here(tmp_path, monkeypatch, epoch: str, seq: int) -> list[str]:
    """The collector's command, run by sh here on a temporary log, for a bit over one heartbeat."""
    log = tmp_path / "carp-events.log"
    monkeypatch.setattr(transition_log, "LOG", str(log))
    (tmp_path / "carp-events.log.1").write_text("".join(_line(n, "MASTER") + "\n" for n in (1, 2)))
    log.write_text("".join(_line(n, "BACKUP") + "\n" for n in (3, 4)))
    command = transition_log.follow_command(epoch, seq)
    proc = subprocess.run(["timeout", "2.6", "sh", "-c", command], capture_output=True, text=True, cwd=tmp_path)
    return proc.stdout.splitlines()


def test_the_collector_reads_rotated_lines_then_the_log_after_its_place(tmp_path, monkeypatch):
    out = _follow_here(tmp_path, monkeypatch, "e1", 1)
    assert out == [_line(2, "MASTER"), _line(3, "BACKUP"), _line(4, "BACKUP"), transition_log.HEARTBEAT]
    assert _follow_here(tmp_path, monkeypatch, "e1", 4) == [transition_log.HEARTBEAT]
    # Another epoch (the node's counter was reset, say after a reinstall): every line is new.
    assert len(_follow_here(tmp_path, monkeypatch, "e2", 4)) == 5


def test_an_epoch_from_the_database_cannot_reach_the_shell(tmp_path, monkeypatch):
    hostile = "x' ; touch pwned ; echo '"
    out = _follow_here(tmp_path, monkeypatch, hostile, 0)
    assert not (tmp_path / "pwned").exists() and len(out) == 5


def test_a_rule_someone_changed_or_removed_is_a_finding():
    assert transition_log.rule_problem("server-1", transition_log.RULE_TEXT) is None
    assert transition_log.rule_problem("server-1", None) is None  # not read: nothing to say
    assert "is missing" in str(transition_log.rule_problem("server-1", ""))
    assert "changed by someone" in str(transition_log.rule_problem("server-1", transition_log.RULE_TEXT + "# edited\n"))


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.mark.django_db(transaction=True)
def test_configure_installs_the_rule_and_restarts_devd_only_when_it_changed(world, quick_carp):
    cluster = configured(world, configure=True)
    for host in world.hosts.values():
        assert host.files[transition_log.RULE] == transition_log.RULE_TEXT
        assert host.files[transition_log.SCRIPT] == transition_log.SCRIPT_TEXT
        assert transition_log.ROTATION in host.files and host.devd_restarts == 1
    again = execute(world, cluster, "configure")
    assert not again.steps.filter(status="changed").exists()
    assert [h.devd_restarts for h in world.hosts.values()] == [1, 1]

    world.hosts["server-2"].files[transition_log.RULE] = "# emptied by hand\n"
    execute(world, cluster, "check", trigger=Run.Trigger.SCHEDULE, actor_name=drift.SCHEDULER)
    findings = (AuditEntry.objects.get(action="drift").after or {})["findings"]
    assert findings == [transition_log.rule_problem("server-2", "# emptied by hand\n")]
    assert Notice.objects.get(kind=Notice.Kind.DRIFT).reason == findings[0]
    execute(world, cluster, "configure")
    assert world.hosts["server-2"].files[transition_log.RULE] == transition_log.RULE_TEXT
    assert [h.devd_restarts for h in world.hosts.values()] == [1, 2]

    execute(world, cluster, "remove")
    for host in world.hosts.values():
        assert transition_log.RULE not in host.files and transition_log.SCRIPT not in host.files
    assert [h.devd_restarts for h in world.hosts.values()] == [2, 3]


def _nodes(world: FakeWorld) -> tuple[Cluster, Server, Server]:
    cluster = configured(world, configure=True)
    return cluster, cluster.servers.get(name="server-1"), cluster.servers.get(name="server-2")


@pytest.mark.django_db(transaction=True)
def test_each_line_is_recorded_once_and_other_vhids_only_move_the_place(world, quick_carp):
    cluster, s1, _ = _nodes(world)
    assert event_services.event_record(server_id=s1.pk, line=_line(1, "MASTER")) == cluster.pk
    assert event_services.event_record(server_id=s1.pk, line=_line(1, "MASTER")) is None  # read again
    assert event_services.event_record(server_id=s1.pk, line=_line(2, "MASTER", vhid=7)) is None
    assert event_services.event_record(server_id=s1.pk, line=transition_log.HEARTBEAT) is None
    s1.refresh_from_db()
    assert CarpEvent.objects.count() == 1 and (s1.events_epoch, s1.events_seq, s1.carp_state) == ("e1", 2, "MASTER")
    assert Cluster.objects.get(pk=cluster.pk).last_transition_at == datetime(2026, 11, 25, 3, 12, 1, tzinfo=UTC)


def _heard(*servers: Server, ago: float = 0.0) -> dict[int, datetime]:
    return {s.pk: timezone.now() - timedelta(seconds=ago) for s in servers}


@pytest.mark.django_db(transaction=True)
def test_notices_when_the_master_changes_none_is_master_or_two_are(world, quick_carp):
    cluster, s1, s2 = _nodes(world)
    event_services.event_record(server_id=s1.pk, line=_line(1, "MASTER"))
    event_services.event_record(server_id=s2.pk, line=_line(1, "BACKUP", old="INIT"))
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))
    assert not Notice.objects.exists()  # the first look at a cluster with one master
    # Only server-2 heard lately, and it is BACKUP: whether server-1 is still MASTER cannot be told yet.
    assert not event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s2))

    event_services.event_record(server_id=s1.pk, line=_line(2, "INIT", old="MASTER", reason="hardware interface down"))
    event_services.event_record(server_id=s2.pk, line=_line(2, "MASTER", reason="master timed out"))
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s2))  # server-1 out of reach
    notice = Notice.objects.get()
    assert (notice.kind, notice.node, notice.old_state, notice.reason) == (
        Notice.Kind.MASTER_CHANGED, "server-2", "BACKUP", "server-2 now holds 192.0.2.100 (master timed out)")
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))  # the same: no notice
    assert Notice.objects.count() == 1

    Server.objects.filter(pk=s1.pk).update(carp_state="MASTER")  # both MASTER: a split brain, but only when...
    assert not event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))  # ...both heard since
    later = {s.pk: timezone.now() + timedelta(seconds=transition_log.HEARTBEAT_SECONDS + 1) for s in (s1, s2)}
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=later)
    split = Notice.objects.latest("id")
    assert split.kind == Notice.Kind.SPLIT_BRAIN and split.node == "server-1, server-2"

    Server.objects.filter(pk__in=[s1.pk, s2.pk]).update(carp_state="BACKUP")
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))
    assert Notice.objects.latest("id").kind == Notice.Kind.NO_MASTER


@pytest.mark.django_db(transaction=True)
def test_a_failover_of_ten_service_ips_is_one_notice_naming_every_address(world, quick_carp):
    cluster, s1, s2 = _nodes(world)
    for vhid in range(2, 11):
        ServiceIP.objects.create(cluster=cluster, position=vhid, interface="em0", vhid=vhid,
                                 addresses=[f"192.0.2.{100 + vhid}/32"], configured=True)
    seq = 0
    for vhid in range(1, 11):
        seq += 1
        event_services.event_record(server_id=s1.pk, line=_line(seq, "MASTER", vhid=vhid))
        event_services.event_record(server_id=s2.pk, line=_line(seq, "BACKUP", old="INIT", vhid=vhid))
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))
    for vhid in range(1, 11):  # server-1's link goes: all ten move
        seq += 1
        event_services.event_record(server_id=s1.pk, line=_line(seq, "INIT", old="MASTER", vhid=vhid,
                                                                reason="hardware interface down"))
        event_services.event_record(server_id=s2.pk, line=_line(seq, "MASTER", vhid=vhid, reason="master timed out"))
    event_services.event_record(server_id=s2.pk, line=_line(seq + 1, "MASTER", vhid=99))  # not carpweb's vhid
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s2))
    notice = Notice.objects.get()
    assert notice.kind == Notice.Kind.MASTER_CHANGED and notice.node == "server-2" and notice.vhid is None
    assert all(f"192.0.2.{100 + v}" in notice.reason for v in range(2, 11)) and "192.0.2.100" in notice.reason
    assert CarpEvent.objects.filter(cluster=cluster, vhid=99).count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_node_out_of_reach_for_a_minute_is_one_notice_until_it_is_heard_again(world, quick_carp):
    _, s1, _ = _nodes(world)
    event_services.event_record(server_id=s1.pk, line=_line(1, "MASTER"))
    event_services.node_trouble(server_id=s1.pk, why="server-1: nothing heard for 11 s", seconds=30)
    assert not Notice.objects.exists()
    for seconds in (61, 90):
        event_services.node_trouble(server_id=s1.pk, why="server-1: nothing heard for 11 s", seconds=seconds)
    notice = Notice.objects.get()
    assert notice.kind == Notice.Kind.NODE_UNREACHABLE and notice.node == "server-1"
    assert Server.objects.get(pk=s1.pk).carp_state == "unreachable"
    event_services.node_heard(server_id=s1.pk)
    back = Server.objects.get(pk=s1.pk)
    assert back.events_error == "" and back.carp_state == "MASTER"  # as its last transition left it
    event_services.node_trouble(server_id=s1.pk, why="again", seconds=61)
    assert Notice.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_collector_on_fake_nodes_records_each_line_once_across_restarts(world, quick_carp):
    _nodes(world)
    world.hosts["server-1"].event_log[:] = [_line(1, "BACKUP", old="INIT"), _line(2, "MASTER")]
    world.hosts["server-2"].event_log[:] = [_line(1, "BACKUP", old="INIT")]

    def collect_until(condition) -> list[str]:
        collector = Collector(callbacks(), connector=world.connect)
        thread = threading.Thread(target=collector.run, daemon=True)
        thread.start()
        try:
            wait_until(condition, limit=10)
        finally:
            collector.stop()
            thread.join(10)
        return [c for c in world.commands("server-1") if "tail -n +1 -F" in c]

    sent = collect_until(lambda: CarpEvent.objects.count() == 3)
    assert "-v e=- -v s=0 " in sent[-1]  # the first session starts at the beginning
    world.hosts["server-1"].event_log.append(_line(3, "INIT", old="MASTER"))
    sent = collect_until(lambda: CarpEvent.objects.count() == 4)
    assert "-v e=e1 -v s=2 " in sent[-1]  # the next one after the last line recorded
    assert sorted(CarpEvent.objects.values_list("node", "seq")) == [("server-1", 1), ("server-1", 2),
                                                                     ("server-1", 3), ("server-2", 1)]


@pytest.mark.django_db
def test_a_delivery_by_email_goes_through_djangos_backend(settings):
    settings.CARPWEB_BASE_URL = "https://carpweb.example.org/"
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    target = services.target_add(address="oncall@example.org")
    notice = services.notice_send(cluster=cluster, kind=Notice.Kind.MASTER_CHANGED, node="server-2", vhid=1,
                                  old_state="BACKUP", new_state="MASTER", reason="master timed out")
    delivery = Delivery.objects.get(notice=notice, target=target)
    services.delivery_attempt(delivery_id=delivery.pk, last_try=False)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.DELIVERED, 1)
    (sent,) = mail.outbox
    assert sent.to == ["oncall@example.org"]
    assert sent.subject == "[carpweb] web: server-2 is MASTER now (BACKUP -> MASTER, master timed out)"
    assert f'"link": "https://carpweb.example.org/clusters/{cluster.pk}/"' in sent.body


@pytest.mark.django_db
def test_the_timeline_shows_who_was_master_when_from_before_the_window_on():
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    now = timezone.now()
    for seq, (node, old, new, hours_ago) in enumerate([
            ("server-1", "BACKUP", "MASTER", 30),  # before the 24-hour window: master when it starts
            ("server-1", "MASTER", "INIT", 6), ("server-2", "BACKUP", "MASTER", 5.999),
            ("server-2", "MASTER", "BACKUP", 3), ("server-1", "BACKUP", "MASTER", 2.999)], 1):
        CarpEvent.objects.create(cluster=cluster, node=node, vhid=1, interface="em0", old_state=old, new_state=new,
                                 node_time=now - timedelta(hours=hours_ago), epoch="e", seq=seq)
    Drill.objects.create(cluster=cluster, status=Drill.Status.OK, outage_s=2.5)
    server = Server.objects.create(cluster=cluster, name="server-1", address="192.0.2.11", ssh_host="h")
    Run.objects.create(cluster=cluster, kind=Run.Kind.MAINTENANCE_ON, target=server)
    line = cluster_timeline(cluster)
    assert [(s.node, s.end is None) for s in line.spans] == [("server-1", False), ("server-2", False),
                                                             ("server-1", True)]
    first, second, last = line.spans
    # The bar starts a little (5%) before the first thing that happened in the last 24 hours, not 24 hours ago.
    assert not line.full and round((line.end - line.start).total_seconds()) == round(6.3 * 3600)
    assert first.x == 0 and round(first.width) == round(1000 * 0.3 / 6.3)  # master when the bar starts
    assert round(second.seconds) == 3 * 3600 - 4 and last.end is None and round(last.x + last.width) == 1000
    assert (first.ended, second.ended, last.ended) == ("INIT", "BACKUP", "")
    assert set(line.legend) == {"server-1", "server-2"} and first.colour == last.colour != second.colour
    assert sorted((m.kind, m.label) for m in line.markers) == [
        ("drill", "failover drill (Succeeded, outage 2.50 s)"), ("maintenance", "Maintenance on: server-1")]
    assert all(round(m.x) == 1000 for m in line.markers)  # just now


@pytest.mark.django_db
def test_the_timeline_has_a_lane_per_service_ip():
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    ServiceIP.objects.create(cluster=cluster, interface="em0", vhid=2, addresses=["2001:db8::100/64"], position=1)
    now = timezone.now()
    for seq, (node, vhid, old, new, minutes_ago) in enumerate([
            ("server-1", 1, "BACKUP", "MASTER", 30), ("server-1", 2, "BACKUP", "MASTER", 30),
            ("server-1", 2, "MASTER", "BACKUP", 20), ("server-2", 2, "BACKUP", "MASTER", 20)], 1):
        CarpEvent.objects.create(cluster=cluster, node=node, vhid=vhid, interface="em0", old_state=old, new_state=new,
                                 node_time=now - timedelta(minutes=minutes_ago), epoch="e", seq=seq)
    line = cluster_timeline(cluster)
    assert [lane.label for lane in line.lanes] == ["vhid 1 · 192.0.2.100", "vhid 2 · 2001:db8::100"]
    one, two = line.lanes
    # vhid 2 moving to server-2 does not end server-1's span of vhid 1: each lane follows its own vhid.
    assert [(s.node, s.end is None) for s in one.spans] == [("server-1", True)]
    assert [(s.node, s.end is None) for s in two.spans] == [("server-1", False), ("server-2", True)]
    assert {s.lane for s in line.spans} == {"vhid 1 · 192.0.2.100", "vhid 2 · 2001:db8::100"}


@pytest.mark.django_db
def test_a_quiet_day_shows_the_whole_day_and_a_busy_minute_at_least_ten_minutes():
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    line = cluster_timeline(cluster)
    assert line.full and round((line.end - line.start).total_seconds()) == 24 * 3600 and not line.spans
    CarpEvent.objects.create(cluster=cluster, node="server-1", vhid=1, interface="em0", old_state="BACKUP",
                             new_state="MASTER", node_time=timezone.now() - timedelta(seconds=20), epoch="e", seq=1)
    line = cluster_timeline(cluster)
    assert not line.full and round((line.end - line.start).total_seconds()) == 600
    assert round(line.spans[0].x) == round(1000 * (580 / 600))


def test_heartbeats_reach_the_database_every_half_minute_or_at_once_after_trouble():
    told: list[int] = []
    collector = Collector(Callbacks(line=lambda s, line: None, trouble=lambda s, why, seconds: None,
                                    heard=told.append, settle=lambda c, heard: True, nodes=dict))
    for _ in range(100):
        collector._handle("line", 7, transition_log.HEARTBEAT)
    assert told == [7] and 7 in collector.heard
    collector._handle("trouble", 7, "12|nothing heard for 11 s")
    collector._handle("line", 7, transition_log.HEARTBEAT)
    collector._handle("line", 7, transition_log.HEARTBEAT)
    assert told == [7, 7]


def test_a_malformed_line_is_kept_as_such_never_dropped_with_its_transition():
    good = transition_log.parse_line("ab12 3 2026-11-25T03:12:07Z 1@em0 BACKUP -> MASTER (master timed out)")
    assert good is not None and not good.malformed
    forged = transition_log.parse_line("ab12 4 2026-11-25T03:12:08Z 1@em0 BACKUP -> PWNED" + "x" * 300 + " (why)")
    assert forged is not None and forged.malformed and (forged.seq, forged.new) == (4, "?")
    assert forged.reason.startswith("malformed line (new state)") and len(forged.reason) <= transition_log.REASON_MAX
    odd = transition_log.parse_line("ab12 5 2026-11-25T03:12:09Z 999@" + "e" * 40 + " MASTER -> BACKUP (\x1b[31mred)")
    assert odd is not None and odd.malformed and (odd.vhid, odd.interface) == (0, "?")
    assert "\x1b" not in odd.reason and "vhid, interface, reason" in odd.reason
    assert transition_log.parse_line("not-hex 1 2026-11-25T03:12:09Z 1@em0 INIT -> BACKUP ()") is None


@pytest.mark.django_db
def test_the_collector_records_a_malformed_line_with_its_place_in_the_log():
    from wizard.services import event_record

    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100",
                                     interface="em0")
    server = Server.objects.create(cluster=cluster, name="server-1", address="192.0.2.11", ssh_host="h",
                                   carp_state="BACKUP")
    line = "ab12 7 2026-11-25T03:12:08Z 1@em0 BACKUP -> " + "M" * 400 + " (" + "r" * 400 + ")"
    assert event_record(server_id=server.pk, line=line) == cluster.pk
    row = CarpEvent.objects.get()
    assert (row.seq, row.new_state, row.old_state) == (7, "?", "BACKUP") and row.reason.startswith("malformed")
    server.refresh_from_db()
    assert server.carp_state == "BACKUP" and server.events_seq == 7


def test_a_node_that_keeps_logging_cannot_postpone_its_clusters_judgement(monkeypatch):
    import time as clock

    from wizard.execution import collector as collector_module

    monkeypatch.setattr(collector_module, "SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(collector_module, "SETTLE_MAX", 0.6)
    judged: list[float] = []

    def settle(cluster_id: int, heard: dict) -> bool:
        judged.append(clock.monotonic())
        return True

    collector = Collector(Callbacks(line=lambda s, line: 5, trouble=lambda s, why, seconds: None,
                                    heard=lambda s: None, settle=settle, nodes=dict))
    writer = threading.Thread(target=collector.run, kwargs={"seconds": 2.5})
    writer.start()
    start = clock.monotonic()
    while clock.monotonic() - start < 2.0:  # a transition every 0.1 s: always inside the settle window
        collector.lines.put(("line", 1, "a transition"))
        clock.sleep(0.1)
    writer.join()
    collector.stop()
    assert judged and judged[0] - start < 0.6 + 0.3, [round(t - start, 2) for t in judged]
    assert len(judged) >= 2  # and again after each maximum, while it goes on


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_sheds_the_session_and_says_so_instead_of_growing():
    import queue as queues

    from wizard.execution.collector import Follower

    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    server = Server.objects.create(cluster=cluster, name="server-1", address="192.0.2.11", ssh_host="h")
    lines: queues.Queue = queues.Queue(3)
    sessions: list[int] = []

    class Flood:
        def follow(self, command, on_line, idle_timeout):
            sessions.append(1)
            for i in range(100):
                on_line(f"line {i}")

        def close(self):
            pass

    follower = Follower(server.pk, lines, lambda s: Flood())  # type: ignore[arg-type,return-value]
    follower.start()
    wait_until(lambda: len(sessions) >= 2, limit=15)  # shed, then a new session: the writer never waits on it
    follower.halt()
    follower.join(10)
    got = [lines.get_nowait() for _ in range(lines.qsize())]
    assert len(got) == 3 and got[:3] == [("line", server.pk, f"line {i}") for i in range(3)]  # bounded, in order
    from wizard.execution.collector import QUEUE_LINES

    assert Collector(Callbacks(line=lambda s, line: None, trouble=lambda s, why, seconds: None, heard=lambda s: None,
                               settle=lambda c, heard: True, nodes=dict)).lines.maxsize == QUEUE_LINES


def test_a_master_that_lost_the_vip_and_took_it_back_is_an_episode():
    t0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    t = transition_log.Transition
    window = [t("server-1", "MASTER", "INIT", "hardware interface down", at(0)),
              t("server-2", "BACKUP", "MASTER", "master timed out", at(3.4)),
              t("server-1", "INIT", "BACKUP", "initialization complete", at(5)),
              t("server-1", "BACKUP", "MASTER", "preempting a slower master", at(5.1)),
              t("server-2", "MASTER", "BACKUP", "more frequent advertisement received", at(5.1))]
    (episode,) = transition_log.reverted_episodes(window, "server-1")
    assert (episode.node, episode.reason, episode.holders) == ("server-1", "hardware interface down", ("server-2",))
    assert episode.seconds == 5.1
    assert transition_log.losses(window) == 2 and transition_log.reverted_episodes(window, "server-2") == []


@pytest.mark.django_db(transaction=True)
def test_flaps_are_told_once_each_then_grouped_then_calm(world, quick_carp, settings):
    settings.CARPWEB_FLAP_LOSSES = 4
    cluster, s1, s2 = _nodes(world)
    seq = {s1.pk: 0, s2.pk: 0}

    def log(server: Server, new: str, old: str, reason: str) -> None:
        seq[server.pk] += 1
        event_services.event_record(server_id=server.pk, line=_line(seq[server.pk], new, old=old, reason=reason))

    log(s1, "MASTER", "BACKUP", "master timed out")
    log(s2, "BACKUP", "INIT", "initialization complete")
    assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))
    for _ in range(5):  # server-1's link bounces: server-2 holds the VIP a few seconds, server-1 takes it back
        log(s1, "INIT", "MASTER", "hardware interface down")
        log(s2, "MASTER", "BACKUP", "master timed out")
        log(s1, "BACKUP", "INIT", "initialization complete")
        log(s1, "MASTER", "BACKUP", "preempting a slower master")
        log(s2, "BACKUP", "MASTER", "more frequent advertisement received")
        assert event_services.cluster_evaluate(cluster_id=cluster.pk, heard=_heard(s1, s2))
    kinds = list(Notice.objects.order_by("id").values_list("kind", flat=True))
    # Each flap is 2 losses of MASTER: the first two are told one by one, the third crosses 4 and is grouped.
    assert kinds == [Notice.Kind.FAILOVER_REVERTED, Notice.Kind.FAILOVER_REVERTED, Notice.Kind.FLAPPING], kinds
    first = Notice.objects.order_by("id").first()
    assert first is not None and "server-1 lost 192.0.2.100 for" in first.reason
    assert "(hardware interface down); server-2 held them meanwhile" in first.reason
    assert event_services.flapping_calm_check() == []  # still flapping
    CarpEvent.objects.filter(cluster=cluster).update(received=timezone.now() - timedelta(hours=1))
    assert event_services.flapping_calm_check() == [cluster.pk]
    assert Notice.objects.latest("id").kind == Notice.Kind.CALM
