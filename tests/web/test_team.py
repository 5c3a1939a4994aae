"""Issue 5: roles on every URL, the audit log (entries, chain, append-only), concurrent edits, login limits."""

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.urls import get_resolver

from tests.helpers import make_cluster
from wizard import audit, crypto, services
from wizard.models import AuditEntry, Cluster, NotificationTarget, Run, Server, ServiceIP

pytestmark = pytest.mark.django_db

ANON, VIEWER, OPERATOR, ADMIN = "anonymous", "viewer", "operator", "admin"
HEALTHY_OR_NOT = (200, 503)
READ = {ANON: 302, VIEWER: 200, OPERATOR: 200, ADMIN: 200}
STREAM = {ANON: 403, VIEWER: 200, OPERATOR: 200, ADMIN: 200}
ADMIN_PAGE = {ANON: 302, VIEWER: 403, OPERATOR: 403, ADMIN: 200}
ADMIN_ACTION = {ANON: 302, VIEWER: 403, OPERATOR: 403, ADMIN: 302}
OPERATOR_ACTION = {ANON: 302, VIEWER: 403, OPERATOR: 302, ADMIN: 302}
# URL name -> [(method, data, {role: status})]; a view missing here fails test_every_view_is_in_the_matrix.
MATRIX: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {
    "cluster-list": [("get", None, READ)],
    "cluster-detail": [("get", None, READ)],
    "cluster-delete": [("get", None, ADMIN_PAGE)],
    "wizard-new": [("get", None, ADMIN_PAGE)],
    "wizard-cluster": [("get", None, ADMIN_PAGE)],
    "wizard-servers": [("get", None, ADMIN_PAGE)],
    "wizard-interface": [("get", None, ADMIN_PAGE)],
    "wizard-review": [("get", None, ADMIN_PAGE)],
    "wizard-service-ips": [("get", None, ADMIN_PAGE)],
    "wizard-discover": [("post", {}, ADMIN_PAGE)],
    "host-keys": [("post", {}, ADMIN_PAGE)],
    "host-keys-pin": [("post", {}, ADMIN_ACTION)],
    "run-create": [("post", {"kind": k}, OPERATOR_ACTION) for k in
                   ("preflight", "verify", "check", "drill", "maintenance-on", "maintenance-off")]
    + [("post", {"kind": k}, ADMIN_ACTION) for k in ("setup", "prepare", "configure", "remove")],
    "check-all": [("post", {}, OPERATOR_ACTION)],
    "run-detail": [("get", None, READ)],
    # Streams answer for themselves (a session or an API token): 403, not a redirect to the login page.
    "run-events": [("get", {"format": "fragments"}, STREAM)],
    "cluster-events": [("get", {"format": "fragments"}, STREAM)],
    "inventory-events": [("get", {"format": "fragments"}, STREAM)],
    "audit-list": [("get", None, READ)],
    "audit-verify": [("post", {}, READ), ("get", None, {ANON: 302, VIEWER: 405, OPERATOR: 405, ADMIN: 405})],
    "user-list": [("get", None, ADMIN_PAGE)],
    "password-change": [("get", None, READ)],
    "token-list": [("get", None, READ)],
    "worker-banner": [("get", None, READ)],
    "notification-list": [("get", None, {ANON: 302, VIEWER: 403, OPERATOR: 200, ADMIN: 200}),
                          # an operator sees the page; adding is the admins' (403); an admin's empty form: 200
                          ("post", {}, {ANON: 302, VIEWER: 403, OPERATOR: 403, ADMIN: 200})],
    "notification-delete": [("post", {}, ADMIN_ACTION)],
    # Metrics need no login but a bearer token; with none configured they do not exist.
    "metrics": [("get", None, {ANON: 404, VIEWER: 404, OPERATOR: 404, ADMIN: 404})],
    # No login: 200 when a worker answers, 503 when none does; either way never a redirect to the login.
    "health": [("get", None, {ANON: HEALTHY_OR_NOT, VIEWER: HEALTHY_OR_NOT, OPERATOR: HEALTHY_OR_NOT,
                              ADMIN: HEALTHY_OR_NOT})],
}


def _user(role):
    user = User.objects.create_user(f"u-{role}", password="irrelevant-pw")
    if role == ADMIN:
        user.is_superuser = True
        user.save()
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _cluster():
    cluster = services.cluster_save(cluster=None, data={"name": "web", "subnet": "192.0.2.0/24",
                                                        "gateway": "192.0.2.1", "vip": "192.0.2.100",
                                                        "interface": "em0"}, carp_password="s3cret-carp")
    services.servers_save(cluster=cluster, rows=[
        {"name": f"server-{i}", "address": f"192.0.2.1{i}", "ssh_host": "127.0.0.1", "ssh_port": 9, "ssh_user": "root",
         "auth": "password", "secret": "ssh-pass-xyz", "privilege": "root", "preferred_master": i == 1}
        for i in (1, 2)])
    return cluster


def test_every_view_is_in_the_matrix():
    names = {k for k in get_resolver().reverse_dict if isinstance(k, str)}
    # The API's routes have their own matrix (tests/web/test_api.py::test_every_api_route_asks_for_a_token).
    ours = {n for n in names if not n.startswith(("admin", "login", "logout", "api-"))}
    assert ours - set(MATRIX) == set(), "add these views to the permission matrix"


@pytest.mark.parametrize("role", [ANON, VIEWER, OPERATOR, ADMIN])
def test_permission_matrix(client, role):
    cluster = _cluster()
    run = Run.objects.create(cluster=cluster, kind="verify", status="ok")
    if role != ANON:
        client.force_login(_user(role))
    kwargs = {"cluster-detail": cluster.pk, "cluster-delete": cluster.pk, "wizard-cluster": cluster.pk,
              "wizard-servers": cluster.pk, "wizard-interface": cluster.pk, "wizard-review": cluster.pk,
              "wizard-service-ips": cluster.pk,
              "wizard-discover": cluster.pk, "host-keys": cluster.pk, "host-keys-pin": cluster.pk,
              "run-create": cluster.pk, "run-detail": run.pk, "run-events": run.pk,
              "cluster-events": cluster.pk,
              "notification-delete": NotificationTarget.objects.create(kind="email", address="a@example.org").pk}
    from django.urls import reverse

    for name, cases in MATRIX.items():
        url = reverse(name, args=[kwargs[name]] if name in kwargs else [])
        for method, data, expected in cases:
            if name == "run-create" and data["kind"].startswith("maintenance"):
                data = {**data, "target": "server-1"}
            res = getattr(client, method)(url, data or {})
            allowed = expected[role] if isinstance(expected[role], tuple) else (expected[role],)
            assert res.status_code in allowed, f"{role} {method.upper()} {name} {data or ''}"


def _sip_post(sip, **row) -> dict:
    base = {"id": sip.pk, "interface": sip.interface, "vhid": sip.vhid, "addresses": ", ".join(sip.addresses),
            "advbase": sip.advbase, "announce": sip.announce, "password": "", **row}
    return {"sips-TOTAL_FORMS": "1", "sips-INITIAL_FORMS": "1", **{f"sips-0-{k}": v for k, v in base.items()}}


def test_audit_records_changes_with_actor_request_and_masked_secrets(client):
    admin = _user(ADMIN)
    client.force_login(admin)
    res = client.post("/clusters/new/", {"name": "db", "subnet": "198.51.100.0/24", "gateway": "198.51.100.1",
                                         "vip": "198.51.100.100", "vhid": "2", "advbase": "1",
                                         "vip_prefix_choice": "32", "carp_password": "first.carp.pw"})
    assert res.status_code == 302
    cluster = Cluster.objects.get(name="db")
    client.post(f"/clusters/{cluster.pk}/wizard/cluster/", {
        "name": "db", "subnet": "198.51.100.0/24", "gateway": "198.51.100.2", "version": str(cluster.version)})
    sip = cluster.service_ips.get()
    res = client.post(f"/clusters/{cluster.pk}/wizard/service-ips/",
                      _sip_post(sip, interface="em0", vhid="3", password="second.carp.pw"))
    assert res.status_code == 302, res.content.decode()[-2000:]
    create = AuditEntry.objects.get(action="cluster.create")
    assert create.actor == admin and create.actor_name == admin.username
    assert create.request_id and create.source_ip == "127.0.0.1"
    update = AuditEntry.objects.get(action="cluster.update")
    assert update.before == {"gateway": "198.51.100.1"} and update.after == {"gateway": "198.51.100.2"}
    sip_update = AuditEntry.objects.get(action="service_ip.update")
    assert sip_update.before is not None and sip_update.after is not None
    assert sip_update.before["vhid"] == 2 and sip_update.after["vhid"] == 3
    assert sip_update.after["carp_password"] == "(secret) replaced"
    assert AuditEntry.objects.filter(action="service_ip.create", cluster_name="db").exists()
    assert AuditEntry.objects.filter(action="credential.replace", cluster_name="db").exists()
    dump = json.dumps(list(AuditEntry.objects.values()), default=str)
    sip.refresh_from_db()
    for secret in ("first.carp.pw", "second.carp.pw", sip.password_enc):
        assert secret not in dump


def test_login_logout_failed_login_users_and_roles_are_audited(client):
    User.objects.create_user("alice", password="alice-long-password")
    client.post("/login/", {"username": "alice", "password": "wrong"})
    client.post("/login/", {"username": "alice", "password": "alice-long-password"})
    client.post("/logout/")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert "login.failed" in actions and "login" in actions and "logout" in actions
    admin = _user(ADMIN)
    client.force_login(admin)
    client.post("/users/", {"action": "create", "username": "bob", "password": "bob-long-password", "role": "viewer"})
    bob = User.objects.get(username="bob")
    client.post("/users/", {"action": "role", "user": bob.pk, "role": "operator"})
    assert AuditEntry.objects.filter(action="user.create", object_repr="bob").exists()
    assert AuditEntry.objects.filter(action="role.change", after__roles=["operator"]).exists()
    assert "bob-long-password" not in json.dumps(list(AuditEntry.objects.values()), default=str)


def test_login_attempts_are_rate_limited(client):
    User.objects.create_user("carol", password="carol-long-password")
    for _ in range(5):
        client.post("/login/", {"username": "carol", "password": "nope"})
    res = client.post("/login/", {"username": "carol", "password": "carol-long-password"})
    assert res.status_code == 429


def test_audit_log_cannot_be_changed_through_the_app():
    entry = audit.record("test.event", after={"x": 1})
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()


def _tamper(sql, params):
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE wizard_auditentry DISABLE TRIGGER wizard_auditentry_append_only")
        cur.execute(sql, params)
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE wizard_auditentry ENABLE TRIGGER wizard_auditentry_append_only")


def _verify_output():
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("audit_verify", stdout=out, stderr=out)
    return exit_.value.code, out.getvalue()


@pytest.mark.parametrize("tampering", ["edit", "delete", "reorder"])
def test_chain_check_finds_the_first_broken_link(tampering):
    ids = [audit.record("test.event", after={"n": i}).pk for i in range(5)]
    assert audit.verify()[0]
    if tampering == "edit":
        _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 99}', ids[2]])
        expected = ids[2]
    elif tampering == "delete":
        _tamper("DELETE FROM wizard_auditentry WHERE id = %s", [ids[2]])
        expected = ids[3]
    else:
        _tamper("UPDATE wizard_auditentry SET id = -1 WHERE id = %s", [ids[1]])
        _tamper("UPDATE wizard_auditentry SET id = %s WHERE id = %s", [ids[1], ids[3]])
        _tamper("UPDATE wizard_auditentry SET id = %s WHERE id = -1", [ids[3]])
        expected = ids[1]
    ok, broken, why = audit.verify()
    assert not ok and broken == expected, why
    code, text = _verify_output()
    assert code == 1 and f"#{expected}" in text


def test_the_badge_checks_only_what_came_after_its_verified_checkpoint():
    from django.test.utils import CaptureQueriesContext

    from wizard.models import AuditCheckpoint

    ids = [audit.record("test.event", after={"n": i}).pk for i in range(6)]
    assert audit.verify(full=False) == (True, None, "6 entries, chain intact")  # no checkpoint yet: all of it
    assert AuditCheckpoint.objects.get().entry_id == ids[-1]
    new = [audit.record("test.event", after={"n": i}).pk for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        ok, _, why = audit.verify(full=False)
    assert ok and why.startswith("9 entries, chain intact, checked from entry")
    reads = [q["sql"] for q in queries.captured_queries if "wizard_auditentry" in q["sql"]]
    assert len(reads) == 2 and f'"id" > {ids[-1]}' in reads[1]  # the checkpoint's entry, then only the new ones
    latest = AuditCheckpoint.objects.first()
    assert latest is not None and latest.entry_id == new[-1]  # the walk left a checkpoint at its end
    later = [audit.record("test.event", after={"n": i}).pk for i in range(2)]
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 99}', later[0]])
    assert audit.verify(full=False)[:2] == (False, later[0])  # after the checkpoint: found
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 0}', later[0]])  # put back
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 98}', new[-1]])
    assert audit.verify(full=False)[:2] == (False, new[-1])  # the checkpoint's own entry was edited: found
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 2}', new[-1]])
    assert audit.verify(full=False)[0]
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 97}', ids[0]])
    assert audit.verify(full=False)[0]  # before a checkpoint: only the full check (audit_verify) looks there
    assert audit.verify()[:2] == (False, ids[0])


def test_postgresql_refuses_update_and_delete():
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL (this run is on SQLite; CI runs the PostgreSQL variant)")
    from django.db import DatabaseError, transaction

    entry = audit.record("test.event")
    for sql in ("UPDATE wizard_auditentry SET action = 'x' WHERE id = %s",
                "DELETE FROM wizard_auditentry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [entry.pk])


def test_second_of_two_concurrent_edits_is_refused(client):
    cluster = _cluster()
    client.force_login(_user(ADMIN))
    form = {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "version": str(cluster.version)}
    first = client.post(f"/clusters/{cluster.pk}/wizard/cluster/", {**form, "gateway": "192.0.2.5"})
    assert first.status_code == 302
    second = client.post(f"/clusters/{cluster.pk}/wizard/cluster/", {**form, "gateway": "192.0.2.9"})
    assert second.status_code == 200
    assert "Someone else saved web" in second.content.decode()
    assert 'value="192.0.2.9"' in second.content.decode()  # what was typed is kept
    assert Cluster.objects.get(pk=cluster.pk).gateway == "192.0.2.5"


def test_editing_applied_settings_offers_configure(client):
    cluster = _cluster()
    Cluster.objects.filter(pk=cluster.pk).update(service_ip_configured=True)
    cluster.service_ips.update(configured=True)
    cluster.refresh_from_db()
    client.force_login(_user(ADMIN))
    sip = cluster.service_ips.get()
    res = client.post(f"/clusters/{cluster.pk}/wizard/service-ips/",
                      {**_sip_post(sip, addresses="192.0.2.101"), "version": str(cluster.version)}, follow=True)
    body = res.content.decode()
    assert "which Configure already applied" in body and "vhid 1: addresses" in body and "Re-run Configure now" in body


def test_a_configured_service_ip_keeps_its_vhid_until_it_is_removed_from_the_nodes(client):
    cluster = _cluster()
    cluster.service_ips.update(configured=True)
    client.force_login(_user(ADMIN))
    sip = cluster.service_ips.get()
    res = client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", _sip_post(sip, vhid="7"), follow=True)
    assert "its vhid and interface stay as they are" in res.content.decode()
    assert cluster.service_ips.get().vhid == 1
    other = ServiceIP.objects.create(cluster=cluster, interface="em0", vhid=2, addresses=["192.0.2.101/32"],
                                     position=1)
    both = {**_sip_post(sip), "sips-0-DELETE": "on", "sips-TOTAL_FORMS": "2", "sips-INITIAL_FORMS": "2",
            **{f"sips-1-{k}": v for k, v in {"id": other.pk, "interface": "em0", "vhid": "2",
                                             "addresses": "192.0.2.101", "advbase": "1",
                                             "announce": "multicast"}.items()}}
    res = client.post(f"/clusters/{cluster.pk}/wizard/service-ips/", both, follow=True)
    assert "is configured on the nodes: take it off them first" in res.content.decode()
    assert cluster.service_ips.count() == 2


def test_secrets_never_rendered_and_encrypted_at_rest(client):
    cluster = _cluster()
    client.force_login(_user(ADMIN))
    pages = [f"/clusters/{cluster.pk}/", f"/clusters/{cluster.pk}/wizard/cluster/",
             f"/clusters/{cluster.pk}/wizard/servers/", f"/clusters/{cluster.pk}/wizard/review/", "/audit/",
             "/audit/?format=json", "/audit/?format=csv", "/"]
    for url in pages:
        res = client.get(url)
        body = b"".join(res.streaming_content) if res.streaming else res.content
        for secret in (b"s3cret-carp", b"ssh-pass-xyz"):
            assert secret not in body, url
    assert crypto.decrypt(Server.objects.get(name="server-1").secret_enc) == "ssh-pass-xyz"
    if connection.vendor == "sqlite":
        # grep in another process: opening the file here would drop SQLite's POSIX locks on it.
        files = [f for f in (connection.settings_dict["NAME"], connection.settings_dict["NAME"] + "-wal")
                 if Path(f).exists()]
        for clear in ("s3cret-carp", "ssh-pass-xyz"):
            found = subprocess.run(["grep", "-c", "-a", clear, *files], capture_output=True, text=True, check=False)
            assert found.returncode == 1, f"{clear} found in clear in {files}"


def test_inventory_search_filter_and_pagination(client):
    for i in range(60):
        make_cluster(name=f"c{i:03d}", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100",
                               healthy=(True if i % 3 == 0 else False if i % 3 == 1 else None))
    client.force_login(_user(VIEWER))
    assert "page 1 of 2" in client.get("/").content.decode()
    assert client.get("/?state=degraded").context["page"].paginator.count == 20
    assert client.get("/?state=never").context["page"].paginator.count == 20
    assert [c.name for c in client.get("/?q=c05").context["page"].object_list][:1] == ["c050"]
