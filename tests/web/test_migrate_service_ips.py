"""Migration 0015: every one-VIP cluster becomes a cluster with one service IP, nothing lost; two old clusters on
the same servers stay two, are reported, and fold into one with cluster_merge."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from wizard import crypto, services
from wizard.models import AuditEntry, CarpEvent, Cluster, Drill, Notice, Run, ServiceIP

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(target: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor


def test_two_old_clusters_on_the_same_servers_migrate_then_merge(capsys):
    old = _migrate([("wizard", "0014_flap_notices")]).loader.project_state([("wizard", "0014_flap_notices")]).apps
    OldCluster, OldServer = old.get_model("wizard", "Cluster"), old.get_model("wizard", "Server")
    OldRun, OldEvent = old.get_model("wizard", "Run"), old.get_model("wizard", "CarpEvent")
    made = {}
    for name, vip, vhid, password in (("web", "192.0.2.100", 1, "WebPass1"), ("web-v2", "192.0.2.101", 2, "V2Pass1")):
        c = OldCluster.objects.create(name=name, subnet="192.0.2.0/24", gateway="192.0.2.1", vip=vip, vhid=vhid,
                                      advbase=2, interface="em0", carp_password_enc=crypto.encrypt(password),
                                      service_ip_configured=True)
        for i in (1, 2):  # the same two machines, twice
            s = OldServer.objects.create(cluster=c, name=f"server-{i}", address=f"192.0.2.1{i}",
                                         ssh_host=f"10.9.0.{i}", ssh_port=22, position=i)
        OldRun.objects.create(cluster=c, kind="check", status="ok")
        OldEvent.objects.create(cluster=c, server=s, node=s.name, vhid=vhid, interface="em0", old_state="BACKUP",
                                new_state="MASTER", epoch="e", seq=vhid)
        made[name] = c.pk

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    web, v2 = Cluster.objects.get(pk=made["web"]), Cluster.objects.get(pk=made["web-v2"])
    for cluster, vip, vhid, password in ((web, "192.0.2.100", 1, "WebPass1"), (v2, "192.0.2.101", 2, "V2Pass1")):
        sip = cluster.service_ips.get()  # exactly one each, nothing lost
        assert (sip.interface, sip.vhid, sip.addresses, sip.advbase, sip.configured) == ("em0", vhid, [f"{vip}/32"],
                                                                                         2, True)
        assert crypto.decrypt(sip.password_enc) == password and sip.search == f" {vip} "
        assert cluster.runs.count() == 1 and cluster.carp_events.count() == 1
    # What happens to them: both stay, each says it shares its servers with the other...
    assert services.shared_servers(cluster=web) == {"web-v2": "server-1"}
    assert services.shared_servers(cluster=v2) == {"web": "server-1"}
    # ...a new node on those servers is refused with the way out...
    with pytest.raises(services.ServiceError, match="already a node of cluster web.*Add a service IP to cluster web"):
        fresh = Cluster.objects.create(name="third", subnet="192.0.2.0/24", gateway="192.0.2.1", interface="em0")
        services.servers_save(cluster=fresh, rows=[
            {"name": "n", "address": "192.0.2.11", "ssh_host": "10.9.0.1", "ssh_port": 22, "ssh_user": "root",
             "auth": "key", "secret": "k", "privilege": "root", "preferred_master": True}])
    # ...and cluster_merge folds one into the other: service IPs, runs, events move; its rows go.
    call_command("cluster_merge", "web", "web-v2")
    assert "merged web-v2 into web: 2 service IPs" in capsys.readouterr().out
    assert not Cluster.objects.filter(name="web-v2").exists()
    assert sorted(web.service_ips.values_list("vhid", flat=True)) == [1, 2]
    assert web.runs.count() == 2 and web.carp_events.count() == 2
    assert services.shared_servers(cluster=web) == {}
    assert AuditEntry.objects.filter(action="cluster.merge", cluster_name="web").exists()
    assert ServiceIP.objects.count() == 2 and not Drill.objects.exists() and not Notice.objects.exists()
    assert Run.objects.filter(cluster=web).count() == 2 and CarpEvent.objects.filter(cluster=web).count() == 2
