"""The Notifications page and `notify_add`: only http(s) URLs and valid addresses, each refusal next to its field;
a secret header stored encrypted and never shown again. /metrics: off without a token, 401 on a wrong one."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tests.helpers import make_cluster
from wizard import crypto
from wizard.models import AuditEntry, CarpEvent, NotificationTarget, Server

pytestmark = pytest.mark.django_db
SECRET = "Bearer hook-secret-7f3a"


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


@pytest.mark.parametrize(("address", "message"), [
    ("ftp://hooks.example.org/carp", "Only http:// and https:// webhook URLs are accepted"),
    ("javascript:alert(1)", "Enter an email address (someone@example.org) or an http(s) webhook URL."),
    ("http://", "Only http:// and https:// webhook URLs are accepted"),
    ("oncall@", "Enter an email address (someone@example.org) or an http(s) webhook URL."),
    ("", "This field is required."),
])
def test_bad_addresses_are_refused_next_to_the_field_and_kept(admin_client, address, message):
    res = admin_client.post("/notifications/", {"address": address, "header_name": "", "header_value": ""})
    assert res.status_code == 200
    body = res.content.decode()
    assert message in body and not NotificationTarget.objects.exists()
    if address:
        assert f'value="{address}"' in body or f'value="{address.replace("&", "&amp;")}"' in body


@pytest.mark.parametrize(("data", "message"), [
    ({"header_name": "X-Token", "header_value": ""}, "Give the header a value, or leave both empty."),
    ({"header_name": "", "header_value": "v"}, "Name the header this value goes in."),
    ({"header_name": "X Token:", "header_value": "v"}, "A header name is letters, digits and dashes."),
    ({"header_name": "X-Token", "header_value": "a\r\nInjected: 1"}, "cannot hold control characters"),
    ({"address": "oncall@example.org", "header_name": "X-Token", "header_value": "v"},
     "Headers go with webhooks, not email."),
])
def test_bad_secret_headers_are_refused(admin_client, data, message):
    res = admin_client.post("/notifications/", {"address": "https://hooks.example.org/carp", **data})
    body = res.content.decode()
    assert message in body and not NotificationTarget.objects.exists()
    assert 'value="v"' not in body  # a secret typed in is not sent back


def test_a_secret_header_is_stored_encrypted_and_never_shown_or_audited(admin_client):
    res = admin_client.post("/notifications/", {"address": "https://hooks.example.org/carp",
                                                "header_name": "Authorization", "header_value": SECRET})
    assert res.status_code == 302
    target = NotificationTarget.objects.get()
    assert target.kind == "webhook" and SECRET not in target.header_value_enc
    assert crypto.decrypt(target.header_value_enc) == SECRET
    page = admin_client.get("/notifications/").content.decode()
    assert "Authorization: ••••••••" in page and SECRET not in page and "hook-secret" not in page
    assert SECRET not in json.dumps(list(AuditEntry.objects.values("before", "after")))
    assert AuditEntry.objects.filter(action="notify.add").exists()
    admin_client.post(f"/notifications/{target.pk}/delete/")
    assert not NotificationTarget.objects.exists() and AuditEntry.objects.filter(action="notify.delete").exists()


def test_a_token_in_a_webhook_url_is_never_shown_or_audited(admin_client):
    url = "https://user:pw@hooks.example.org/services/T00/B00/tok3nSecretValue9"
    assert admin_client.post("/notifications/", {"address": url}).status_code == 302
    target = NotificationTarget.objects.get()
    assert target.address == url and target.shown == "https://hooks.example.org/…lue9"
    page = admin_client.get("/notifications/", follow=True).content.decode()
    assert "hooks.example.org/…lue9" in page and "tok3nSecret" not in page and "user:pw" not in page
    admin_client.post(f"/notifications/{target.pk}/delete/")
    rows = json.dumps(list(AuditEntry.objects.values("object_repr", "before", "after")), ensure_ascii=False)
    assert "hooks.example.org/…lue9" in rows and "tok3nSecret" not in rows and "user:pw" not in rows


def test_notify_add_validates_like_the_page(tmp_path):
    make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    with pytest.raises(CommandError, match="address: Only http:// and https://"):
        call_command("notify_add", "ftp://x.example.org/")
    with pytest.raises(CommandError, match="no cluster named 'db'"):
        call_command("notify_add", "oncall@example.org", "--cluster", "db")
    value = tmp_path / "value"
    value.write_text(SECRET + "\n")
    call_command("notify_add", "https://hooks.example.org/carp", "--cluster", "web", "--header", "Authorization",
                 "--header-value-file", str(value))
    call_command("notify_add", "oncall@example.org")
    rows = {(t.kind, t.address, t.cluster.name if t.cluster else None) for t in NotificationTarget.objects.all()}
    assert rows == {("webhook", "https://hooks.example.org/carp", "web"), ("email", "oncall@example.org", None)}


def test_carp_events_prints_one_line_per_transition_since_a_time():
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    for seq, (node, old, new, reason, at) in enumerate([
            ("server-1", "BACKUP", "MASTER", "master timed out", "2026-11-25T03:00:01+00:00"),
            ("server-1", "MASTER", "INIT", "hardware interface down", "2026-11-25T03:12:08+00:00"),
            ("server-2", "BACKUP", "MASTER", "master timed out", "2026-11-25T03:12:11+00:00")], 1):
        CarpEvent.objects.create(cluster=cluster, node=node, vhid=1, interface="em0", old_state=old, new_state=new,
                                 reason=reason, node_time=at, epoch="e", seq=seq)
    out = StringIO()
    call_command("carp_events", "web", "--since", "2026-11-25T03:10:00Z", stdout=out)
    assert out.getvalue().splitlines() == [
        "2026-11-25T03:12:08Z server-1 1@em0 MASTER -> INIT (hardware interface down)",
        "2026-11-25T03:12:11Z server-2 1@em0 BACKUP -> MASTER (master timed out)"]
    with pytest.raises(CommandError, match="give a time zone"):
        call_command("carp_events", "web", "--since", "2026-11-25T03:10:00")
    with pytest.raises(CommandError, match="is not an ISO time"):
        call_command("carp_events", "web", "--since", "yesterday")


def test_metrics_are_off_without_a_token_and_refused_with_a_wrong_one(client, settings):
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    Server.objects.create(cluster=cluster, name="server-1", address="192.0.2.11", ssh_host="h", carp_state="MASTER")
    CarpEvent.objects.create(cluster=cluster, node="server-1", vhid=1, interface="em0", old_state="BACKUP",
                             new_state="MASTER", epoch="e", seq=1)
    settings.CARPWEB_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.CARPWEB_METRICS_TOKEN = "right-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    res = client.get("/metrics", HTTP_AUTHORIZATION="Bearer right-token")
    assert res.status_code == 200 and res["Content-Type"].startswith("text/plain")
    body = res.content.decode()
    labels = 'cluster="web",interface="em0",node="server-1",service_ip="192.0.2.100"'
    assert f'carpweb_carp_state{{{labels},state="MASTER",vhid="1"}} 1.0' in body
    assert f'carpweb_carp_state{{{labels},state="BACKUP",vhid="1"}} 0.0' in body
    assert 'carpweb_carp_transitions_total{cluster="web",node="server-1",vhid="1"} 1.0' in body
    assert "carpweb_workers " in body and "carpweb_runs" in body



def test_an_operator_reads_the_notifications_page_but_cannot_add_a_target(client):
    from wizard import services
    from wizard.roles import Role

    operator = services.user_create(username="op", password="operator-pass-1", role=Role.OPERATOR,
                                    must_change_password=False)
    client.force_login(operator)
    page = client.get("/notifications/")
    assert page.status_code == 200 and "Send cluster events to" not in page.content.decode()
    res = client.post("/notifications/", {"address": "https://hooks.example.org/carp"})
    assert res.status_code == 403
    assert not NotificationTarget.objects.exists()
