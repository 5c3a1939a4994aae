"""The runner and the cluster operations over a fake transport: every path without root, SSH or a worker.

Runs call the runner in this process (no Celery); the lab tests show the same against real sshd and CARP.
"""

from __future__ import annotations

import time

import pytest

from tests.fakes import FakeWorld
from wizard import services
from wizard.execution import runner
from wizard.models import AuditEntry, Cluster, Drill, Run, Server, Step
from wizard.ssh import SSHError

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"


def make_cluster(world: FakeWorld, *, names=("server-1", "server-2"), configure=False, probe=False,
                 password="fake-pass-1", name="web") -> Cluster:
    cluster = services.cluster_save(cluster=None, data={
        "name": name, "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "vip": "192.0.2.100", "vhid": 1,
        "advbase": 1, "interface": "em0", "configure_service_ip": configure}, carp_password=password)
    port = 2200 + Cluster.objects.count()  # each cluster its own machines (one node belongs to one cluster)
    rows = [{"name": name, "address": f"192.0.2.{11 + i}", "ssh_host": f"127.0.0.{i + 1}", "ssh_port": port,
             "ssh_user": "root",
             "auth": "password", "secret": "ssh-pw", "privilege": "root", "preferred_master": i == 0}
            for i, name in enumerate(names)]
    if probe:
        rows.append({**rows[0], "name": "client", "address": "192.0.2.50", "preferred_master": False, "role": "probe"})
    services.servers_save(cluster=cluster, rows=rows)
    Server.objects.filter(cluster=cluster).update(host_key=KEY, host_key_fingerprint="SHA256:fake")
    for row in rows:
        world.add(row["name"], row["address"])
    return cluster


def execute(world: FakeWorld, cluster: Cluster, kind: str, **kw: object) -> Run:
    run = services.run_start(cluster=cluster, kind=kind, **kw)  # type: ignore[arg-type]
    return services.run_execute(run_id=run.pk, connector=world.connect)


def statuses(run: Run, where: str) -> dict[str, str]:
    rows = run.steps.filter(cluster_wide=True) if where == "cluster-wide" else run.steps.filter(server_name=where)
    return {s.name: s.status for s in rows}


def configured(world: FakeWorld, **kw: object) -> Cluster:
    cluster = make_cluster(world, **kw)  # type: ignore[arg-type]
    run = execute(world, cluster, "configure")
    assert run.status == Run.Status.OK, [(s.where, s.name, s.message) for s in run.steps.filter(status="failed")]
    return cluster


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def test_setup_on_fresh_nodes_changes_then_a_rerun_changes_nothing(world):
    cluster = make_cluster(world)
    run = execute(world, cluster, "setup")
    assert run.status == Run.Status.OK, run.summary
    for server in ("server-1", "server-2"):
        st = statuses(run, server)
        assert st.pop("loader-conf") == st.pop("kldload") == "changed" and set(st.values()) == {"ok"}
        assert world.hosts[server].carp_loaded and world.hosts[server].loader["carp_load"] == "YES"
    again = execute(world, cluster, "setup")
    assert again.summary == "nothing to change" and not again.steps.filter(status="changed").exists()
    assert AuditEntry.objects.filter(action="run.finish").count() == 2  # written once per run


def test_a_server_that_cannot_connect_skips_its_steps_and_the_other_finishes(world):
    cluster = make_cluster(world)
    world.refuse["server-1"] = SSHError("hostkey", "server-1: HOST KEY MISMATCH. Nothing was run.")
    run = execute(world, cluster, "setup")
    assert run.status == Run.Status.FAILED and run.summary == "1 step(s) failed on server-1"
    st = statuses(run, "server-1")
    assert st.pop("connect") == "failed" and set(st.values()) == {"skipped"}
    assert set(run.steps.filter(server_name="server-1", status="skipped").values_list("message", flat=True)) == {
        "not run: no SSH session"}
    assert set(statuses(run, "server-2").values()) <= {"ok", "changed"}
    assert world.hosts["server-1"].sent == []
    assert AuditEntry.objects.filter(action="hostkey.mismatch", object_repr="server-1").exists()


def test_after_a_failed_step_the_rest_of_that_server_and_the_check_are_skipped(world):
    cluster = make_cluster(world, configure=True)
    world.hosts["server-1"].system = "Linux"
    run = execute(world, cluster, "setup")
    st = statuses(run, "server-1")
    assert st["freebsd"] == "failed" and "not FreeBSD" in run.steps.get(server_name="server-1", name="freebsd").message
    assert {st[n] for n in ("interface", "loader-conf", "vip-persist:em0:1")} == {"skipped"}
    assert statuses(run, "cluster-wide") == {"check": "skipped"}
    server_2 = run.steps.filter(server_name="server-2")
    assert set(server_2.exclude(phase="configure").values_list("status", flat=True)) <= {"ok", "changed"}
    assert set(server_2.filter(phase="configure").values_list("message", flat=True)) == {runner.STAGE_BLOCKED}
    assert not world.hosts["server-2"].vhids  # the service IP goes on every node or none


def test_no_node_configures_before_every_node_passed_part_one(world):
    cluster = make_cluster(world, configure=True)
    run = execute(world, cluster, "setup")
    assert run.status == Run.Status.OK
    part_one = run.steps.exclude(cluster_wide=True).exclude(phase__in=["configure", "connect"])
    configure = run.steps.filter(phase="configure")
    starts = [t for t in configure.values_list("started", flat=True) if t is not None]
    ends = [t for t in part_one.values_list("finished", flat=True) if t is not None]
    assert len(starts) == configure.count() > 0 and min(starts) >= max(ends)


def test_a_run_over_its_time_limit_is_stopped_and_every_row_ends(world, settings):
    settings.CARPWEB_RUN_TIMEOUT = 0.5
    cluster = make_cluster(world)
    world.add("server-1", "192.0.2.11", hang_on="kldstat")  # this server never answers that command
    t0 = time.monotonic()
    run = execute(world, cluster, "setup")
    assert time.monotonic() - t0 < 5
    assert run.status == Run.Status.FAILED and "CARPWEB_RUN_TIMEOUT (0.5 s)" in run.summary
    assert not run.steps.filter(status__in=Step.UNFINISHED).exists()
    assert run.steps.get(server_name="server-1", name="kldload").status == "failed"
    assert all(c.closed.is_set() for c in world.connections)


def test_the_password_goes_on_stdin_never_in_a_command_or_a_row(world):
    cluster = configured(world, password="Sec.ret-Pass:1")
    for host in ("server-1", "server-2"):
        for command, stdin in world.hosts[host].sent:
            assert "Sec.ret-Pass:1" not in command
            if "$CARP_PASS" in command:
                assert stdin == "Sec.ret-Pass:1\n"
        assert "pass Sec.ret-Pass:1 alias 192.0.2.100/32" in world.hosts[host].rc_conf["ifconfig_em0_alias0"]
    for step in Step.objects.filter(run__cluster=cluster):
        assert "Sec.ret-Pass:1" not in step.command + step.message + step.stdout_tail + step.stderr_tail


def test_check_is_healthy_with_one_master_and_stores_what_it_saw(world):
    cluster = configured(world)
    run = execute(world, cluster, "check")
    assert run.status == Run.Status.OK
    assert "server-1 MASTER, server-2 BACKUP; VIP answers" in run.steps.get(name="check").message
    assert dict(Server.objects.filter(cluster=cluster).values_list("name", "carp_state")) == {
        "server-1": "MASTER", "server-2": "BACKUP"}
    cluster.refresh_from_db()
    assert cluster.healthy is True and cluster.checked_at is not None


def test_check_names_a_split_brain_from_a_password_mismatch(world, quick_carp):
    cluster = configured(world)
    world.hosts["server-2"].vhids[1].password = "other"
    world.elect()
    run = execute(world, cluster, "check")
    message = run.steps.get(name="check").message
    assert run.status == Run.Status.FAILED and "Split brain" in message and "password" in message


def test_check_repairs_a_demotion_a_drill_left_behind(world):
    cluster = configured(world)
    world.hosts["server-1"].sysctl["demotion"] = 240
    world.elect()
    Drill.objects.create(cluster=cluster, master_before="server-1", demotion_pending=True)
    run = execute(world, cluster, "check")
    check = run.steps.get(name="check")
    assert run.status == Run.Status.OK and check.status == "changed"
    assert "Repaired server-1: demotion 240 -> 0" in check.message
    assert "sysctl net.inet.carp.demotion=-240" in check.command  # changes and reads are in the transcript
    assert "sysctl net.inet.carp\n" in check.command  # the read the repair came from
    assert world.master() == "server-1" and not Drill.objects.filter(demotion_pending=True).exists()


def _pings(world, gap: range, sent: int = 90) -> None:
    """What the client's `ping -c 90 -i 0.1` of the VIP prints when the replies in `gap` are missing."""
    world.hosts["client"].probe_output = "".join(
        f"64 bytes from 192.0.2.100: icmp_seq={i} ttl=64 time=0.1 ms\n" for i in range(sent) if i not in gap
    ) + f"{sent} packets transmitted, {sent - len(gap)} packets received\n"


def test_drill_stops_carp_times_the_takeover_restores_and_fails_back(world):
    cluster = configured(world, probe=True)
    _pings(world, gap=range(10, 31))
    run = execute(world, cluster, "drill")
    drill = Drill.objects.get(run=run)
    assert run.status == Run.Status.OK, [(s.name, s.message) for s in run.steps.all()]
    assert (drill.master_before, drill.master_during, drill.probe) == ("server-1", "server-2", "client")
    assert drill.outage_s == pytest.approx(2.1) and drill.bound_s == pytest.approx(3 + 100 / 256)
    assert drill.failback_ok and not drill.demotion_pending
    assert drill.probes == [{"address": "192.0.2.100", "sent": 90, "lost": 21, "outage_s": 2.1}]
    assert world.hosts["server-1"].sysctl["demotion"] == 0 and world.master() == "server-1"
    assert world.hosts["server-1"].sysctl["allow"] == 1
    assert "sysctl net.inet.carp.allow=0" in world.commands("server-1")  # a stop, not a demotion
    assert not any(c.startswith("sysctl net.inet.carp.demotion=") for c in world.commands("server-1"))
    assert statuses(run, "cluster-wide") == {"check": "ok", "drill-stop": "changed", "drill-takeover": "ok",
                                             "drill-restore": "changed", "drill-failback": "ok"}


def test_a_drill_whose_prober_gets_no_reply_stops_nothing(world):
    cluster = configured(world, probe=True)
    _pings(world, gap=range(90))
    run = execute(world, cluster, "drill")
    assert run.status == Run.Status.FAILED
    assert statuses(run, "cluster-wide") == {"check": "ok", "drill-stop": "failed", "drill-takeover": "skipped",
                                             "drill-restore": "skipped", "drill-failback": "skipped"}
    assert run.steps.get(name="drill-stop").message == (
        "No reply from 192.0.2.100 to a ping from client within 5 s, so what a client loses could not be measured: "
        "CARP was not stopped on server-1.")
    assert not any("carp.allow" in c for c in world.commands("server-1"))
    drill = Drill.objects.get(run=run)
    assert not drill.demotion_pending and drill.outage_s is None and drill.bound_s is None
    assert world.master() == "server-1"


def test_a_drill_that_loses_the_master_keeps_the_stop_recorded_and_check_starts_carp_again(world):
    cluster = configured(world, probe=True)
    _pings(world, gap=range(10, 31))
    original = world.hosts["server-1"].answer

    def break_after_stop(command: str, password: str):
        result = original(command, password)
        if command.startswith("sysctl net.inet.carp.allow=0"):
            world.hosts["server-1"].reachable = False
        return result

    world.hosts["server-1"].answer = break_after_stop  # type: ignore[method-assign]
    run = execute(world, cluster, "drill")
    assert run.status == Run.Status.FAILED
    assert Drill.objects.get(run=run).demotion_pending
    assert statuses(run, "cluster-wide")["drill-restore"] == "failed"
    assert "the next run (Check) starts CARP again" in run.steps.get(name="drill-restore").message
    assert statuses(run, "cluster-wide")["drill-failback"] == "skipped"
    world.hosts["server-1"].answer = original  # type: ignore[method-assign]
    world.hosts["server-1"].reachable = True
    check = execute(world, cluster, "check")
    message = check.steps.get(name="check").message
    assert check.status == Run.Status.OK, message
    assert "Repaired server-1: CARP started again (net.inet.carp.allow 0 -> 1)" in message
    assert "demotion" not in message  # the kernel took its interface-down demotion back itself
    assert world.hosts["server-1"].sysctl == {"allow": 1, "preempt": 1, "demotion": 0}
    assert world.master() == "server-1" and not Drill.objects.filter(demotion_pending=True).exists()


def test_maintenance_moves_the_vip_and_its_end_brings_it_back(world):
    cluster = configured(world)
    on = execute(world, cluster, "maintenance-on", target="server-1")
    assert on.status == Run.Status.OK, [s.message for s in on.steps.all()]
    assert world.master() == "server-2" and world.hosts["server-1"].sysctl["demotion"] == 240
    assert Server.objects.get(cluster=cluster, name="server-1").maintenance
    with pytest.raises(services.ServiceError, match="Every other node is already in maintenance"):
        services.run_start(cluster=cluster, kind="maintenance-on", target="server-2")
    off = execute(world, cluster, "maintenance-off", target="server-1")
    assert off.status == Run.Status.OK and world.master() == "server-1"


def test_a_server_named_cluster_does_not_collide_with_the_cluster_wide_rows(world):
    cluster = configured(world, names=("cluster", "server-2"))
    run = execute(world, cluster, "check")
    assert run.status == Run.Status.OK
    assert run.steps.filter(server_name="cluster", cluster_wide=False).count() == 1  # its connect row
    assert run.steps.get(cluster_wide=True, name="check").where == "cluster-wide"


def test_a_duplicated_message_runs_a_run_once(world, published):
    cluster = make_cluster(world)
    run = services.run_start(cluster=cluster, kind="verify")
    assert published == [("wizard.run_execute", [run.pk])]  # one message per run, after the commit
    first = services.run_execute(run_id=run.pk, connector=world.connect)
    second = services.run_execute(run_id=run.pk, connector=world.connect)
    assert first.status == second.status == Run.Status.FAILED  # carp is not loaded: verify fails, once
    assert runner.run_execute(run.pk, connector=world.connect) is None
    assert AuditEntry.objects.filter(action="run.finish").count() == 1


def test_an_rc_conf_sh_cannot_parse_fails_its_step_plainly(world):
    cluster = make_cluster(world, configure=True)
    world.hosts["server-1"].files["/etc/rc.conf"] = 'hostname="node-1"\nifconfig_em0="inet 192.0.2.11/24\n'
    run = execute(world, cluster, "configure")
    assert run.status == Run.Status.FAILED
    failed = run.steps.get(server_name="server-1", status="failed")
    assert failed.message == ("/etc/rc.conf does not parse as sh (line 2: unterminated quoted string (\")); sysrc "
                              "and rc cannot read it either. Fix that line on the node, then run again.")
    assert run.steps.get(server_name="server-2", name=failed.name).status in ("ok", "changed")
