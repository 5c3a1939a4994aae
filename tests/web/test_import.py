"""manage.py cluster_import: today's one-VIP JSON unchanged, the service-IP shape, and --merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from wizard import crypto
from wizard.models import Cluster, ServiceIP

pytestmark = pytest.mark.django_db

SERVERS: list[dict[str, object]] = [
           {"name": "server-1", "address": "192.0.2.11", "address6": "2001:db8::11", "ssh_host": "10.9.0.1",
            "ssh_password": "pw", "preferred_master": True},
           {"name": "server-2", "address": "192.0.2.12", "address6": "2001:db8::12", "ssh_host": "10.9.0.2",
            "ssh_password": "pw"}]


def _import(tmp_path: Path, data: dict, *args: str) -> str:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    from io import StringIO
    out = StringIO()
    call_command("cluster_import", str(path), *args, stdout=out)
    return out.getvalue()


def test_the_one_vip_shape_still_imports_as_one_service_ip(tmp_path):
    out = _import(tmp_path, {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "vip": "192.0.2.100",
                             "vhid": 7, "advbase": 2, "password": "OldShape1", "interface": "em0",
                             "servers": SERVERS})
    assert "cluster web saved with 2 servers and 1 service IP" in out
    sip = ServiceIP.objects.get()
    assert (sip.interface, sip.vhid, sip.addresses, sip.advbase) == ("em0", 7, ["192.0.2.100/32"], 2)
    assert crypto.decrypt(sip.password_enc) == "OldShape1"


def test_the_service_ips_shape_with_ipv6_and_unicast(tmp_path):
    data = {"name": "web", "subnet": "192.0.2.0/24", "subnet6": "2001:db8::/64", "gateway": "192.0.2.1",
            "interface": "em0", "servers": SERVERS,
            "service_ips": [{"interface": "em0", "vhid": 10, "addresses": ["192.0.2.100/32"]},
                            {"interface": "em0", "vhid": 11, "addresses": ["2001:db8::100/64"]},
                            {"interface": "em0", "vhid": 12, "addresses": ["192.0.2.101/32"], "unicast": True}]}
    assert "3 service IPs" in _import(tmp_path, data)
    sips = list(Cluster.objects.get(name="web").service_ips.all())
    assert [(s.vhid, s.addresses, s.announce) for s in sips] == [
        (10, ["192.0.2.100/32"], "multicast"), (11, ["2001:db8::100/64"], "multicast"),
        (12, ["192.0.2.101/32"], "unicast")]
    passwords = {crypto.decrypt(s.password_enc) for s in sips}
    assert len(passwords) == 3 and all(len(p) == 19 for p in passwords)  # generated, one per vhid
    # Again: an update, not a copy; the passwords are kept.
    _import(tmp_path, data)
    assert {crypto.decrypt(s.password_enc) for s in ServiceIP.objects.all()} == passwords


def test_bad_service_ips_are_refused_with_the_field_and_nothing_is_saved(tmp_path):
    base = {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "interface": "em0",
            "servers": SERVERS}
    for bad, says in (({"vhid": 10, "addresses": ["2001:db8::100"]}, "needs its prefix length"),
                      ({"vhid": 10, "addresses": ["fe80::1/64"]}, "link-local"),
                      ({"vhid": 300, "addresses": ["192.0.2.100"]}, "vhid is 1-255"),
                      ({"vhid": 10, "addresses": ["192.0.2.100"], "password": "a-b"}, "dash")):
        with pytest.raises(CommandError, match=says):
            _import(tmp_path, {**base, "service_ips": [{"interface": "em0", **bad}]})
        assert not Cluster.objects.exists()


def test_the_same_servers_again_are_refused_unless_merged(tmp_path):
    _import(tmp_path, {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "vip": "192.0.2.100",
                       "interface": "em0", "servers": SERVERS})
    second = {"name": "web-v6", "subnet": "192.0.2.0/24", "subnet6": "2001:db8::/64", "gateway": "192.0.2.1",
              "interface": "em0", "servers": SERVERS,
              "service_ips": [{"interface": "em0", "vhid": 11, "addresses": ["2001:db8::100/64"]}]}
    with pytest.raises(CommandError, match="already a node of cluster web.*--merge"):
        _import(tmp_path, second)
    assert Cluster.objects.count() == 1
    assert "cluster web saved with 2 servers and 2 service IPs" in _import(tmp_path, second, "--merge")
    assert sorted(ServiceIP.objects.values_list("vhid", flat=True)) == [1, 11]


def test_any_address_finds_its_cluster_in_the_inventory(tmp_path, admin_client):
    data = {"name": "web", "subnet": "192.0.2.0/24", "subnet6": "2001:db8::/64", "gateway": "192.0.2.1",
            "interface": "em0", "servers": SERVERS,
            "service_ips": [{"interface": "em0", "vhid": 10, "addresses": ["192.0.2.100/32"]},
                            {"interface": "em0", "vhid": 11, "addresses": ["2001:db8::100/64"]}]}
    _import(tmp_path, data)
    servers = [{**s, "ssh_host": f"{s['ssh_host']}0", "address": str(s["address"]).replace(".1", ".2"), "address6": ""}
               for s in SERVERS]
    _import(tmp_path, {**data, "name": "db", "subnet6": "", "servers": servers,
                       "service_ips": [{"interface": "em0", "vhid": 20, "addresses": ["192.0.2.200/32"]}]})
    for query, found in (("2001:0db8:0::100", "web"), ("2001:db8::100", "web"), ("192.0.2.100", "web"),
                         ("192.0.2.200", "db"), ("2001:db8::11", "web")):
        page = admin_client.get("/", {"q": query}).content.decode()
        other = "db" if found == "web" else "web"
        assert f">{found}</a>" in page and f">{other}</a>" not in page, query
    page = admin_client.get("/").content.decode()
    assert "2001:db8::100" in page and "vhid" in page.lower()
