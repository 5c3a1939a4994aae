"""The web pages: login required, validation messages next to fields (never a 500), secrets never echoed."""

import pytest
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_cluster
from wizard.models import Cluster, Drill

pytestmark = pytest.mark.django_db

CLUSTER = {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "vip": "192.0.2.100", "vhid": "1",
           "advbase": "1", "vip_prefix_choice": "32", "carp_password": ""}


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


def test_login_required(client):
    assert client.get("/").status_code == 302
    assert client.get("/clusters/new/")["Location"].startswith("/login/")


def test_cluster_step_keeps_input_and_explains(admin_client):
    res = admin_client.post("/clusters/new/", {**CLUSTER, "subnet": "192.0.2.5/24", "vip": "198.51.100.1"})
    assert res.status_code == 200
    body = res.content.decode()
    assert "192.0.2.5/24 is an address, not a network: did you mean 192.0.2.0/24?" in body
    assert 'value="198.51.100.1"' in body


def test_gateway_equal_to_vip_refused(admin_client):
    res = admin_client.post("/clusters/new/", {**CLUSTER, "vip": "192.0.2.1"})
    assert "must differ from the gateway" in res.content.decode()


def test_carp_password_is_generated_encrypted_and_never_shown(admin_client):
    dash = admin_client.post("/clusters/new/", {**CLUSTER, "carp_password": "s3cret-pass"}).content.decode()
    assert "rc would read a dash as an address range" in dash and not Cluster.objects.exists()
    res = admin_client.post("/clusters/new/", {**CLUSTER, "carp_password": "s3cret.pass"})
    cluster = Cluster.objects.get(name="web")
    assert res.status_code == 302
    sip = cluster.service_ips.get()
    assert "s3cret.pass" not in sip.password_enc and sip.addresses == ["192.0.2.100/32"]
    page = admin_client.get(f"/clusters/{cluster.pk}/wizard/cluster/").content.decode()
    review = admin_client.get(f"/clusters/{cluster.pk}/wizard/review/").content.decode()
    sips = admin_client.get(f"/clusters/{cluster.pk}/wizard/service-ips/").content.decode()
    assert "s3cret.pass" not in page + review + sips


def test_servers_step_validates_the_list(admin_client):
    admin_client.post("/clusters/new/", CLUSTER)
    cluster = Cluster.objects.get(name="web")
    data = {"servers-TOTAL_FORMS": "2", "servers-INITIAL_FORMS": "0", "servers-MIN_NUM_FORMS": "2",
            "servers-MAX_NUM_FORMS": "200"}
    for i, (name, addr) in enumerate([("a", "192.0.2.11"), ("a", "192.0.2.1")]):
        data.update({f"servers-{i}-name": name, f"servers-{i}-address": addr, f"servers-{i}-ssh_port": "22",
                     f"servers-{i}-ssh_user": "root", f"servers-{i}-auth": "password",
                     f"servers-{i}-password": "pw", f"servers-{i}-privilege": "root"})
    body = admin_client.post(f"/clusters/{cluster.pk}/wizard/servers/", data).content.decode()
    assert "Server names must be unique" in body
    assert "192.0.2.1 is the gateway" in body
    assert 'value="pw"' not in body


def test_after_adding_a_row_the_save_button_saves(admin_client):
    """The add-a-row button posts to ?add=1; the form's own action must not keep it, or every later click on
    "Save and continue" would add one more row instead of saving (the browser test found it)."""
    admin_client.post("/clusters/new/", CLUSTER)
    cluster = Cluster.objects.get(name="web")
    for step, prefix in (("servers", "servers"), ("service-ips", "sips")):
        url = f"/clusters/{cluster.pk}/wizard/{step}/"
        body = admin_client.post(url + "?add=1", {f"{prefix}-TOTAL_FORMS": "1"}).content.decode()
        assert f'<form method="post" action="{url}"' in body and 'formaction="?add=1"' in body, step


def test_adding_a_service_ip_by_htmx_appends_one_card_and_counts_it(admin_client):
    admin_client.post("/clusters/new/", CLUSTER)
    cluster = Cluster.objects.get(name="web")
    url = f"/clusters/{cluster.pk}/wizard/service-ips/?add=1"
    body = admin_client.post(url, {"sips-TOTAL_FORMS": "1", "sips-0-interface": "em0", "sips-0-vhid": "1",
                                   "sips-0-addresses": "192.0.2.100/32", "sips-0-password": "typed.secret1"},
                             headers={"HX-Request": "true"}).content.decode()
    assert "<form" not in body and body.count("<article") == 1 and "Service IP 2" in body
    assert 'name="sips-1-vhid"' in body and 'value="2"' in body  # the next free vhid on em0
    assert 'id="id_sips-TOTAL_FORMS" hx-swap-oob="true"' in body and 'name="sips-TOTAL_FORMS" value="2"' in body
    assert "typed.secret1" not in body


def test_service_ip_rows_are_validated_next_to_the_field(admin_client):
    admin_client.post("/clusters/new/", CLUSTER)
    Cluster.objects.filter(name="web").update(interface="em0")
    cluster = Cluster.objects.get(name="web")
    rows = [("em0", "1", "192.0.2.100", "multicast"), ("em0", "1", "2001:db8::100", "unicast"),
            ("em0", "3", "fe80::1/64", "multicast"), ("em0", "4", "192.0.2.100, 198.51.100.7", "multicast")]
    data = {"sips-TOTAL_FORMS": str(len(rows)), "sips-INITIAL_FORMS": "0"}
    for i, (iface, vhid, addresses, announce) in enumerate(rows):
        data.update({f"sips-{i}-interface": iface, f"sips-{i}-vhid": vhid, f"sips-{i}-addresses": addresses,
                     f"sips-{i}-advbase": "1", f"sips-{i}-announce": announce})
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", data)
    body = res.content.decode()
    assert res.status_code == 200
    assert "2001:db8::100 needs its prefix length, such as 2001:db8::100/64." in body
    assert "fe80::1/64 is a link-local" in body
    data["sips-1-addresses"] = "2001:db8::100/64"
    data["sips-2-addresses"] = "192.0.2.102"
    body = admin_client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", data).content.decode()
    assert "vhid 1 is already used on em0 in this cluster." in body
    assert "192.0.2.100 is in another service IP already." in body
    assert "198.51.100.7 is outside the nodes&#x27; subnet 192.0.2.0/24 on em0." in body
    assert "Unicast names one peer, so it needs exactly 2 nodes (this cluster has 0)." in body
    assert cluster.service_ips.count() == 1  # nothing saved


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=0, max_size=300))
def test_arbitrary_input_never_500s(admin_client, text):
    for field in ("name", "subnet", "gateway", "vip", "vhid", "advbase", "carp_password"):
        res = admin_client.post("/clusters/new/", {**CLUSTER, "name": "h", field: text})
        assert res.status_code in (200, 302)
        Cluster.objects.filter(name="h").delete()


KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def test_switching_key_to_password_requires_the_password_and_keeps_no_key(admin_client):
    from wizard import crypto

    admin_client.post("/clusters/new/", CLUSTER)
    cluster = Cluster.objects.get(name="web")
    data = {"servers-TOTAL_FORMS": "2", "servers-INITIAL_FORMS": "0", "servers-MIN_NUM_FORMS": "2",
            "servers-MAX_NUM_FORMS": "200"}
    for i, (name, addr) in enumerate([("server-1", "192.0.2.11"), ("server-2", "192.0.2.12")]):
        data.update({f"servers-{i}-name": name, f"servers-{i}-address": addr, f"servers-{i}-ssh_port": "22",
                     f"servers-{i}-ssh_user": "root", f"servers-{i}-auth": "key",
                     f"servers-{i}-private_key": KEY_TEXT, f"servers-{i}-privilege": "root"})
    assert admin_client.post(f"/clusters/{cluster.pk}/wizard/servers/", data).status_code == 302
    ids = list(cluster.servers.order_by("position").values_list("pk", flat=True))
    data.update({"servers-INITIAL_FORMS": "2", "servers-0-id": str(ids[0]), "servers-1-id": str(ids[1]),
                 "servers-0-private_key": "", "servers-1-private_key": "", "servers-0-auth": "password"})
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/servers/", data)
    assert res.status_code == 200
    assert "You switched to a password: enter it" in str(res.context["formset"].forms[0].errors["password"])
    server = cluster.servers.get(name="server-1")
    assert server.auth == "key" and crypto.decrypt(server.secret_enc) == KEY_TEXT  # nothing half-changed
    data["servers-0-password"] = KEY_TEXT  # pasting the key into the password field is no way around it
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/servers/", data)
    assert "That is a private key" in str(res.context["formset"].forms[0].errors["password"])


def test_the_service_refuses_an_auth_switch_without_the_new_secret():
    from wizard import services

    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    row = {"name": "server-1", "address": "192.0.2.11", "ssh_host": "h", "ssh_port": 22, "ssh_user": "root",
           "auth": "key", "secret": KEY_TEXT, "privilege": "root", "preferred_master": True}
    services.servers_save(cluster=cluster, rows=[row])
    with pytest.raises(services.ServiceError, match="needs the new password"):
        services.servers_save(cluster=cluster, rows=[{**row, "auth": "password", "secret": ""}])
    assert cluster.servers.get().auth == "key"


def test_unicast_on_a_second_interface_uses_the_peer_address_discovery_saw_there(admin_client):
    from wizard import plan
    from wizard.models import Server

    admin_client.post("/clusters/new/", CLUSTER)
    Cluster.objects.filter(name="web").update(interface="em0")
    cluster = Cluster.objects.get(name="web")
    for i in (1, 2):
        Server.objects.create(cluster=cluster, name=f"server-{i}", address=f"192.0.2.1{i}", ssh_host="127.0.0.1",
                              freebsd_release="14.3-RELEASE", seen_vhids={"em0": [], "em1": []},
                              seen_addresses={"em0": [f"192.0.2.1{i}/24"], "em1": [] if i == 2 else ["10.1.0.11/24"]})
    data = {"sips-TOTAL_FORMS": "2", "sips-INITIAL_FORMS": "0"}
    for i, (iface, vhid, addresses, announce) in enumerate([("em0", "1", "192.0.2.100/32", "multicast"),
                                                             ("em1", "2", "10.1.0.100/32", "unicast")]):
        data.update({f"sips-{i}-interface": iface, f"sips-{i}-vhid": vhid, f"sips-{i}-addresses": addresses,
                     f"sips-{i}-advbase": "1", f"sips-{i}-announce": announce})
    body = admin_client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", data).content.decode()
    assert "Unicast on em1 sends to the other node&#x27;s IPv4 address there, and discovery saw none on " \
           "server-2&#x27;s em1." in body
    Server.objects.filter(name="server-2").update(seen_addresses={"em1": ["10.1.0.12/24"]})
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", data)
    assert res.status_code == 302, res.content.decode()
    cluster.refresh_from_db()
    targets = plan.targets(cluster, list(cluster.servers.all()), "20260101T000000")
    em1 = {name: next(v for v in t.vips if v.interface == "em1") for name, t in targets.items()}
    assert (em1["server-1"].peer, em1["server-2"].peer) == ("10.1.0.12", "10.1.0.11")
    assert all(not v.unicast for t in targets.values() for v in t.vips if v.interface == "em0")


def test_a_drill_without_an_outage_figure_says_why(admin_client):
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    why = "No reply from 192.0.2.100 to a ping from client within 5 s: CARP was not stopped on <server-1>."
    Drill.objects.create(cluster=cluster, status=Drill.Status.FAILED, master_before="server-1", message=why)
    page = admin_client.get(f"/clusters/{cluster.pk}/").content.decode()
    assert "not measured<br><small class=\"muted\">No reply from 192.0.2.100" in page
    assert "&lt;server-1&gt;" in page and "<server-1>" not in page  # the text is escaped, never markup
