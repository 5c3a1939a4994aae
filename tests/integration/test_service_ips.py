"""One cluster, three service IPs on the lab's real CARP (14.x): IPv4 multicast, IPv6, and IPv4 unicast. Then the
same cluster on 13.x: unicast refused with the reason, multicast working."""

import time
from io import StringIO

import pytest
from django.core.management import call_command

from tests.helpers import THREE_SERVICE_IPS, lab_cluster, three_service_ips, wait_run
from wizard import services
from wizard.models import Cluster, Drill, Run, Server, ServiceIP

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _run(cluster, kind, limit=120, **kw):
    return wait_run(services.run_start(cluster=cluster, kind=kind, **kw), limit=limit)


def _failed(run):
    return [(s.server_name, s.name, s.message) for s in run.steps.filter(status="failed")]


def _states(cluster):
    return {s.vhid: s.state for s in ServiceIP.objects.filter(cluster=cluster)}


def test_three_service_ips_configure_check_drill_and_remove_one(world):
    cluster = three_service_ips(world)
    setup = _run(cluster, "setup", limit=180)
    assert setup.status == Run.Status.OK, _failed(setup)
    rows = set(setup.steps.filter(server_name="server-1").values_list("name", flat=True))
    assert {"vip-interface:em0:12", "vip-now:em0:10", "vip-now:em0:11", "vip-persist:em0:12"} <= rows
    unicast = setup.steps.get(server_name="server-1", name="vip-interface:em0:12").message
    assert "unicast to 192.0.2.12, which answers" in unicast
    # One MASTER per vhid, all on the preferred master.
    assert set(_states(cluster).values()) == {"server-1 MASTER, server-2 BACKUP"}
    for address in ("192.0.2.100", "192.0.2.101"):
        assert world.exec("client", ["ping", "-c", "1", "-t", "2", address]).returncode == 0
    assert world.exec("client", ["ping6", "-c", "1", "-X", "2", "2001:db8::100"]).returncode == 0
    shown = world.exec("server-1", ["ifconfig", "em0"]).stdout
    assert "inet6 2001:db8::100 prefixlen 64 vhid 11" in shown and "peer 192.0.2.12 peer6 ff02::12" in shown
    rc = world.exec("server-2", ["cat", "/etc/rc.conf"]).stdout
    assert "inet6 2001:db8::100 prefixlen 64 vhid 11 advskew 100 pass " in rc
    assert "vhid 12 advskew 100 pass " in rc and " peer 192.0.2.11 alias 192.0.2.101/32" in rc
    again = _run(cluster, "configure")
    assert again.status == Run.Status.OK and not again.steps.filter(status="changed").exists(), _failed(again)

    # A planned handover to server-2: every address probed every 10 ms from the client, the lost ones counted.
    out = StringIO()
    call_command("carp_run", cluster.name, "handover", "--to", "server-2", "--wait", stdout=out)
    handed = Run.objects.filter(cluster=cluster, kind="handover").latest("id")
    assert handed.status == Run.Status.OK, _failed(handed)
    lines = out.getvalue().splitlines()
    at = lines.index(next(line for line in lines if line.startswith(f"run {handed.pk}: ok")))
    assert [line.split(": ")[0] for line in lines[at - 3:at]] == ["192.0.2.100", "2001:db8::100", "192.0.2.101"]
    assert all(line.endswith(" probes lost") and " of " in line for line in lines[at - 3:at])
    record = Drill.objects.get(run=handed)
    assert record.kind == "handover" and record.master_during == "server-2" and record.probe == "client"
    assert {p["address"] for p in record.probes} == {"192.0.2.100", "2001:db8::100", "192.0.2.101"}
    print("\nhandover: " + "; ".join(f"{p['address']} {p['lost']} of {p['sent']} lost" for p in record.probes))
    assert all(p["sent"] >= 400 and p["lost"] == 0 for p in record.probes), record.probes
    assert set(_states(cluster).values()) == {"server-1 BACKUP, server-2 MASTER"}
    assert Server.objects.get(cluster=cluster, name="server-1").maintenance
    back = _run(cluster, "maintenance-off", target="server-1")
    assert back.status == Run.Status.OK and set(_states(cluster).values()) == {"server-1 MASTER, server-2 BACKUP"}

    # A failure drill stops CARP on the master: every service IP moves, each address's outage within the bound.
    drill = _run(cluster, "drill", limit=180)
    assert drill.status == Run.Status.OK, _failed(drill)
    record = Drill.objects.get(run=drill)
    assert record.master_during == "server-2" and record.bound_s is not None
    print("\ndrill: " + "; ".join(f"{p['address']} {p['outage_s']} s" for p in record.probes)
          + f" (bound {record.bound_s:.2f} s)")
    assert [p["address"] for p in record.probes] == ["192.0.2.100", "2001:db8::100", "192.0.2.101"]
    assert all(p["outage_s"] is not None and p["outage_s"] <= record.bound_s for p in record.probes), record.probes

    # Multicast blocked to server-2: the multicast vhids split, the unicast one does not.
    world.fault("server-2", "multicast-off")
    try:
        time.sleep(3 * 1 + 100 / 256 + 1.5)  # server-2's master-down timer runs out for the multicast vhids
        check = _run(cluster, "check")
        text = Cluster.objects.get(pk=cluster.pk).diagnosis
        assert check.status == Run.Status.FAILED, text
        text = cluster.__class__.objects.get(pk=cluster.pk).diagnosis
        assert "Split brain: server-1 and server-2 are all MASTER for vhid 10" in text
        assert "for vhid 11 on em0 (2001:db8::100)" in text and "vhid 12 on em0" not in text
    finally:
        world.fault("server-2", "clear")
    calm = _run(cluster, "check")
    assert calm.status == Run.Status.OK, (Cluster.objects.get(pk=cluster.pk).diagnosis, _failed(calm))

    # Removing one service IP leaves the others untouched.
    v6 = ServiceIP.objects.get(cluster=cluster, vhid=11)
    removed = _run(cluster, "remove", service_ip=v6.pk)
    assert removed.status == Run.Status.OK, _failed(removed)
    assert not removed.steps.filter(name="events-uninstall").exists()  # the devd rule stays for the others
    v6.refresh_from_db()
    assert not v6.configured and ServiceIP.objects.filter(cluster=cluster, configured=True).count() == 2
    shown = world.exec("server-1", ["ifconfig", "em0"]).stdout
    assert "2001:db8::100" not in shown and "vhid 10" in shown and "vhid 12" in shown
    rc = world.exec("server-1", ["cat", "/etc/rc.conf"]).stdout
    assert "2001:db8::100" not in rc and "ifconfig_em0_alias2" not in rc and "ifconfig_em0_alias1" in rc
    assert _run(cluster, "check").status == Run.Status.OK


def test_on_13x_unicast_is_refused_with_the_reason_and_multicast_works(world):
    for name in ("server-1", "server-2"):
        world.reinstall(name, "13.2-RELEASE")
    cluster = three_service_ips(world)
    preflight = _run(cluster, "preflight")
    assert preflight.status == Run.Status.FAILED
    refused = preflight.steps.get(server_name="server-1", name="vip-interface:em0:12")
    assert refused.status == "failed" and "13.2-RELEASE: unicast CARP (ifconfig's peer) needs 14.0" in refused.message
    assert preflight.steps.get(server_name="server-1", name="vip-interface:em0:10").status == "ok"
    services.service_ips_save(cluster=cluster, rows=[{**r, "announce": "multicast"} for r in THREE_SERVICE_IPS])
    setup = _run(cluster, "setup", limit=180)
    assert setup.status == Run.Status.OK, _failed(setup)
    assert set(_states(cluster).values()) == {"server-1 MASTER, server-2 BACKUP"}


def _heard(run, node):
    return run.steps.get(server_name=node, name="carp-heard")


def test_preflight_listens_names_a_device_on_the_vhid_and_warns_when_multicast_does_not_arrive(world):
    """Preflight listens to the segment (tcpdump -T carp): another device on the vhid stops it; an existing vhid
    that a node does not hear is a warning on that node's row (multicast blocked), not a stop."""
    cluster = lab_cluster(world, probe=True, password="lab-heard-test")
    world.fault("client", "rogue-carp", "1", "some-other-pass", "192.0.2.99", "0")
    try:
        run = _run(cluster, "preflight")
        assert run.status == Run.Status.FAILED
        for node in ("server-1", "server-2"):
            row = _heard(run, node)
            assert row.status == "failed" and "advertised on em0 by 192.0.2.50" in row.message, row.message
    finally:
        world.fault("client", "clear")

    assert _run(cluster, "configure").status == Run.Status.OK
    # server-2 loses the service IP (as after a botched hand edit) and the switch stops flooding multicast to it
    world.exec("server-2", ["ifconfig", "em0", "inet", "192.0.2.100", "-alias"], check=True)
    assert _run(cluster, "preflight").steps.get(server_name="server-2", name="carp-heard").message.endswith(
        "vhid 1: advertisements heard from 192.0.2.11")
    world.fault("server-2", "multicast-off")
    try:
        run = _run(cluster, "preflight")
        row = _heard(run, "server-2")
        assert row.status == "warning" and "heard no advertisement of vhid 1 on em0" in row.message, row.message
        assert _heard(run, "server-1").status == "ok"
        assert run.status == Run.Status.OK and "a warning on server-2" in run.summary, (run.summary, _failed(run))
    finally:
        world.fault("server-2", "clear")
