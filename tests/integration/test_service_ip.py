"""The service IP on the lab's real CARP: configure, re-run, reboot, drill, split brain, maintenance, remove."""

import json
import threading
from pathlib import Path

import pytest

from tests.helpers import lab_cluster, statuses, wait_run, wait_until
from wizard import crypto, services
from wizard.models import AuditEntry, Drill, Run, Server, Step

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
VIP = "192.0.2.100"



def _run(cluster, kind, limit=90, **kw):
    return wait_run(services.run_start(cluster=cluster, kind=kind, **kw), limit=limit)


def _states(cluster):
    return {s.name: s.carp_state for s in cluster.servers.filter(role="node")}


def _configured(world, **kw):
    cluster = lab_cluster(world, probe=True, **kw)
    run = _run(cluster, "configure")
    assert run.status == Run.Status.OK, [(s.server_name, s.name, s.message) for s in run.steps.filter(status="failed")]
    return cluster


def test_configure_then_client_sees_vip_and_rerun_changes_nothing(world):
    cluster = _configured(world)
    assert _states(cluster) == {"server-1": "MASTER", "server-2": "BACKUP"}
    assert world.exec("client", ["ping", "-c", "1", "-t", "2", VIP]).returncode == 0
    rc = world.exec("server-2", ["sysrc", "-n", "ifconfig_em0_alias0"]).stdout
    assert rc.startswith("inet vhid 1 advskew 100 pass ") and rc.rstrip().endswith(f"alias {VIP}/32")
    assert world.exec("server-1", ["sysctl", "-n", "net.inet.carp.preempt"]).stdout == "1\n"
    again = _run(cluster, "configure")
    assert again.status == Run.Status.OK
    assert again.steps.filter(status="changed").count() == 0


def test_password_is_in_no_transcript_and_no_command(world, celery_worker_process):
    celery_log = celery_worker_process.log
    cluster = _configured(world)
    password = crypto.decrypt(cluster.service_ips.get().password_enc)
    for step in Step.objects.filter(run__cluster=cluster):
        for text in (step.command, step.message, step.stdout_tail, step.stderr_tail):
            assert password not in text
    for host in ("server-1", "server-2"):
        assert not [line for line in world.log(host) if password in line]  # not even in the SSH exec request
    key = Path(world.key_path).read_text().split("\n")[1]  # a line of the private key's body
    rows = json.dumps(list(AuditEntry.objects.values()), default=str)
    log = celery_log.read_text()
    for secret in (password, key):
        assert secret not in rows and secret not in log


def test_reboot_of_both_nodes_brings_the_same_state_back(world):
    cluster = _configured(world)
    world.reboot("server-1")
    world.reboot("server-2")
    check = _run(cluster, "check")
    assert check.status == Run.Status.OK, check.steps.get(name="check").message
    assert _states(cluster) == {"server-1": "MASTER", "server-2": "BACKUP"}


def test_drill_outage_within_bound_and_failback(world):
    cluster = _configured(world)
    run = _run(cluster, "drill")
    drill = Drill.objects.get(run=run)
    assert run.status == Run.Status.OK, [(s.name, s.status, s.message) for s in run.steps.filter(cluster_wide=True)]
    assert drill.probe == "client"
    assert drill.master_before == "server-1" and drill.master_during == "server-2"
    assert drill.outage_s is not None and drill.bound_s is not None, _drill_evidence(world, drill)
    assert drill.outage_s <= drill.bound_s + 1, _drill_evidence(world, drill)
    assert drill.failback_ok and not drill.demotion_pending
    assert world.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "0\n"
    assert world.exec("server-1", ["sysctl", "-n", "net.inet.carp.allow"]).stdout == "1\n"
    # A crash, not a handover: the backup waited the master-down interval, so clients saw an outage.
    assert drill.outage_s >= 2.0, _drill_evidence(world, drill)


def _drill_evidence(world, drill):
    """What a failed drill assertion shows: the figures, the drill rows, and each host's CARP transitions (with
    the kernel's reasons) and addresses."""
    rows = [(s.name, s.status, s.message) for s in drill.run.steps.filter(cluster_wide=True).order_by("pk")]
    hosts = {h: (world.exec(h, ["sh", "-c", "grep carp: /var/log/messages | tail -n 12"]).stdout,
                 world.exec(h, ["ip", "-4", "-o", "addr", "show", "dev", "em0"]).stdout)
             for h in ("server-1", "server-2", "client")}
    return (drill.outage_s, drill.takeover_s, drill.bound_s, drill.probes, drill.message, rows, hosts)


def test_a_drill_or_handover_whose_prober_hears_nothing_changes_nothing(world):
    cluster = _configured(world)
    for host in ("server-1", "server-2"):
        world.clear_log(host)
    # The client cannot reach the service IP (a route that drops it): no baseline, so no outage can be measured.
    world.exec("client", ["ip", "route", "add", "blackhole", f"{VIP}/32"], check=True)
    try:
        drill = _run(cluster, "drill")
        handover = _run(cluster, "handover", target="server-2")
    finally:
        world.exec("client", ["ip", "route", "del", "blackhole", f"{VIP}/32"], check=True)
    assert drill.status == Run.Status.FAILED and handover.status == Run.Status.FAILED
    rows = {s.name: s for s in drill.steps.filter(cluster_wide=True)}
    said = f"No reply from {VIP} to a ping from client within 5 s, so what a client loses could not be measured"
    assert rows["drill-stop"].status == "failed", rows["drill-stop"].message
    assert rows["drill-stop"].message == f"{said}: CARP was not stopped on server-1."
    assert {n: rows[n].status for n in ("drill-takeover", "drill-restore", "drill-failback")} == dict.fromkeys(
        ("drill-takeover", "drill-restore", "drill-failback"), "skipped")
    record = Drill.objects.get(run=drill)
    assert not record.demotion_pending and record.outage_s is None and record.bound_s is None and record.probes == []
    assert handover.steps.get(name="handover").message == f"{said}: nothing was demoted."
    for host in ("server-1", "server-2"):  # neither stopped nor demoted: not even tried
        assert not [c for c in world.log(host) if "carp.allow=" in c or "carp.demotion=" in c], world.log(host)
    assert "carp: MASTER" in world.exec("server-1", ["ifconfig", "em0"]).stdout
    assert not cluster.servers.filter(maintenance=True).exists()


def test_carp_started_again_after_a_fault_mid_drill(world):
    cluster = _configured(world)
    run = services.run_start(cluster=cluster, kind="drill")

    def cut_when_demoted():
        wait_until(lambda: Step.objects.filter(run=run, name="drill-stop", status="changed").exists(), limit=60)
        world.fault("server-1", "sshd-stop")

    cutter = threading.Thread(target=cut_when_demoted)
    cutter.start()
    wait_run(run, limit=90)
    cutter.join()
    assert run.status == Run.Status.FAILED
    assert Drill.objects.get(run=run).demotion_pending
    assert world.exec("server-1", ["sysctl", "-n", "net.inet.carp.allow"]).stdout == "0\n"
    world.fault("server-1", "clear")
    check = _run(cluster, "check")
    assert check.status == Run.Status.OK, check.steps.get(name="check").message
    assert "Repaired server-1: CARP started again (net.inet.carp.allow 0 -> 1)" in check.steps.get(name="check").message
    assert world.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "0\n"
    assert not Drill.objects.filter(cluster=cluster, demotion_pending=True).exists()
    assert _states(cluster)["server-1"] == "MASTER"


def test_split_brain_from_a_wrong_password_is_explained(world):
    cluster = _configured(world)
    world.exec("server-2", ["ifconfig", "em0", "vhid", "1", "pass", "not-the-same"], check=True)
    # server-2 stops accepting server-1's adverts and, a master-down interval later, becomes MASTER too.
    wait_until(lambda: "carp: MASTER" in world.exec("server-2", ["ifconfig", "em0"]).stdout, limit=15, every=0.2)
    run = _run(cluster, "check")
    assert run.status == Run.Status.FAILED
    message = run.steps.get(name="check").message
    assert "Split brain" in message and "password" in message
    cluster.refresh_from_db()
    assert cluster.healthy is False and "Split brain" in cluster.diagnosis
    assert _run(cluster, "configure").status == Run.Status.OK  # re-applies one password everywhere


def test_rogue_speaker_on_the_vhid_is_explained(world):
    cluster = _configured(world, password="lab-rogue-test", master_advskew=10)
    world.fault("client", "rogue-carp", "1", "lab-rogue-test", VIP, "0")
    # The rogue wins the election before Check looks.
    wait_until(lambda: "BACKUP" in world.exec("server-1", ["ifconfig", "em0"]).stdout, limit=15, every=0.2)
    try:
        run = _run(cluster, "check")
        message = run.steps.get(name="check").message
        assert run.status == Run.Status.FAILED
        assert "another device on the segment holds vhid 1" in message
    finally:
        world.fault("client", "clear")


def test_maintenance_moves_the_vip_and_undemote_brings_it_back(world):
    cluster = _configured(world)
    on = _run(cluster, "maintenance-on", target="server-1")
    assert on.status == Run.Status.OK, [s.message for s in on.steps.all()]
    assert _states(cluster) == {"server-1": "BACKUP", "server-2": "MASTER"}
    assert Server.objects.get(cluster=cluster, name="server-1").maintenance
    with pytest.raises(services.ServiceError, match="Every other node is already in maintenance"):
        services.run_start(cluster=cluster, kind="maintenance-on", target="server-2")
    off = _run(cluster, "maintenance-off", target="server-1")
    assert off.status == Run.Status.OK
    assert _states(cluster) == {"server-1": "MASTER", "server-2": "BACKUP"}


def test_remove_leaves_no_alias_and_no_rc_line(world):
    cluster = _configured(world)
    run = _run(cluster, "remove")
    assert run.status == Run.Status.OK
    for host in ("server-1", "server-2"):
        assert "vhid" not in world.exec(host, ["ifconfig", "em0"]).stdout
        assert "ifconfig_em0_alias" not in world.exec(host, ["cat", "/etc/rc.conf"]).stdout
        assert world.exec(host, ["sysrc", "-f", "/boot/loader.conf", "-n", "carp_load"]).stdout == "YES\n"
    assert set(statuses(run, "server-1").values()) <= {"ok", "changed"}


def test_changing_password_and_advskew_updates_runtime_and_rc_conf_on_every_node(world):
    cluster = _configured(world, password="first.pass.1")
    services.cluster_save(cluster=cluster, data={"master_advskew": 20})
    sip = cluster.service_ips.get()
    services.service_ips_save(cluster=cluster, rows=[{"id": sip.pk, "interface": "em0", "vhid": 1,
                                                      "addresses": sip.addresses, "password": "second.pass.2"}])
    run = _run(cluster, "configure")
    assert run.status == Run.Status.OK, [s.message for s in run.steps.filter(status="failed")]
    assert run.steps.filter(name="vip-now:em0:1", status="changed").count() == 2
    for host, skew in (("server-1", 20), ("server-2", 100)):
        line = world.exec(host, ["sysrc", "-n", "ifconfig_em0_alias0"]).stdout
        assert f"advskew {skew} pass second.pass.2 alias" in line
        assert f"advskew {skew}" in world.exec(host, ["ifconfig", "em0"]).stdout
    assert _states(cluster) == {"server-1": "MASTER", "server-2": "BACKUP"}


def test_configure_repairs_a_key_changed_at_runtime_and_the_split_brain_ends(world):
    """As a user tried it: server-2's key changed by hand at runtime made two MASTERs; Check said to run Configure;
    Configure answered "already done" everywhere and the split brain stayed. Configure now compares each node's
    running key (root's ifconfig -k, on the node) with the password and re-applies it where it differs."""
    cluster = _configured(world)
    world.exec("server-2", ["ifconfig", "em0", "vhid", "1", "pass", "not-the-password"], check=True)
    wait_until(lambda: _states_now(world) == {"server-1": "MASTER", "server-2": "MASTER"}, limit=10)
    configure = _run(cluster, "configure")  # straight away: no unhealthy Check asks it to re-apply everything
    assert configure.status == Run.Status.OK
    repaired = configure.steps.get(server_name="server-2", name="vip-now:em0:1")
    assert repaired.status == "changed" and "the running key differed" in repaired.message, repaired.message
    assert configure.steps.get(server_name="server-1", name="vip-now:em0:1").status == "ok"
    wait_until(lambda: _states_now(world) == {"server-1": "MASTER", "server-2": "BACKUP"}, limit=10)
    assert _run(cluster, "check").status == Run.Status.OK
    password = crypto.decrypt(cluster.service_ips.get().password_enc)
    assert not [line for line in world.log("server-2") if password in line]  # compared on the node, never sent


def _states_now(world) -> dict[str, str]:
    def state(host: str) -> str:
        out = world.exec(host, ["ifconfig", "em0"]).stdout
        return next((ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("carp:")), "")

    return {h: state(h) for h in ("server-1", "server-2")}
