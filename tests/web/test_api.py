"""The REST API: tokens (shown once, kept as a keyed hash, read-only, revoked, expired), roles, the contract's
paths, field-keyed errors, and no secret in any answer. No lab: runs are started, not executed."""

import io
import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone

from tests.helpers import make_cluster
from wizard import crypto
from wizard.models import ApiToken, AuditEntry, Cluster, Run, Server
from wizard.services import tokens

pytestmark = pytest.mark.django_db
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAsecretkeybody\n-----END OPENSSH PRIVATE KEY-----\n"


def person(name: str, role: str) -> User:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def token_for(user: User, **kw) -> str:
    return tokens.token_create(user=user, **kw)[1]


def bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


def ready_cluster(name: str = "web"):
    cluster = make_cluster(name=name, subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100",
                           cluster_interface="em0")
    for i in (1, 2):
        Server.objects.create(cluster=cluster, name=f"server-{i}", address=f"192.0.2.1{i}", ssh_host="127.0.0.1",
                              secret_enc=crypto.encrypt(KEY), host_key="ssh-ed25519 AAAAC3Nz",
                              host_key_fingerprint="SHA256:x", preferred_master=i == 1)
    return cluster


def test_token_create_prints_it_once_and_keeps_only_a_keyed_hash(client, caplog):
    caplog.set_level(logging.DEBUG)
    person("alice", "operator")
    out, err = io.StringIO(), io.StringIO()
    call_command("token_create", "alice", "--expires", "30", stdout=out, stderr=err)
    text = out.getvalue().strip()
    assert text.startswith("carpweb_") and len(text.split("_")) == 3 and "shown this once" in err.getvalue()
    key_id, secret = text.split("_")[1:]
    token = ApiToken.objects.get(key_id=key_id)
    assert token.expires is not None and token.digest != secret and len(token.digest) == 64
    cluster = ready_cluster()
    res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "verify"}, content_type="application/json",
                      headers=bearer(text))
    assert res.status_code == 201, res.content
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert secret not in dump.getvalue() and secret not in caplog.text
    assert not AuditEntry.objects.filter(after__icontains=secret).exists()
    entry = AuditEntry.objects.get(action="run.start")
    assert (entry.actor_name, entry.token_id) == ("alice", key_id)  # the token's id as well as the user
    assert (AuditEntry.objects.get(action="token.create").after or {})["key_id"] == key_id


def test_the_contract_paths(client):
    cluster = ready_cluster()
    text = token_for(person("olga", "operator"))
    listing = client.get("/api/v1/clusters/", headers=bearer(text)).json()
    assert set(listing) >= {"results", "next"} and listing["results"][0]["id"] == cluster.pk
    assert listing["results"][0]["name"] == "web" and listing["results"][0]["state"] == "never"
    created = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "verify"},
                          content_type="application/json", headers=bearer(text))
    assert created.status_code == 201 and isinstance(created.json()["id"], int)
    started = time.monotonic()
    run = client.get(f"/api/v1/runs/{created.json()['id']}/?wait=1", headers=bearer(text)).json()
    assert run["status"] == "pending" and time.monotonic() - started >= 1  # no worker here: the wait ran out
    Run.objects.filter(pk=run["id"]).update(status=Run.Status.OK)
    started = time.monotonic()
    assert client.get(f"/api/v1/runs/{run['id']}/?wait=30", headers=bearer(text)).json()["status"] == "ok"
    assert time.monotonic() - started < 5
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.1")
    assert "/api/v1/clusters/{id}/runs/" in schema.json()["paths"]
    assert client.get("/api/v1/health/").status_code in (200, 503)


def test_filters_and_cursor_pagination(client):
    for n in range(3):
        make_cluster(name=f"c{n}", subnet="192.0.2.0/24", gateway="192.0.2.1", vip=f"192.0.2.{100 + n}")
    text = token_for(person("vera", "viewer"))
    page = client.get("/api/v1/clusters/?limit=2", headers=bearer(text)).json()
    assert [c["name"] for c in page["results"]] == ["c0", "c1"] and page["next"]
    rest = client.get(page["next"], headers=bearer(text)).json()
    assert [c["name"] for c in rest["results"]] == ["c2"] and rest["next"] is None
    assert [c["name"] for c in client.get("/api/v1/clusters/?address=192.0.2.102",
                                          headers=bearer(text)).json()["results"]] == ["c2"]
    assert [c["name"] for c in client.get("/api/v1/clusters/?name=c1", headers=bearer(text)).json()["results"]] \
        == ["c1"]


def test_a_viewers_token_and_a_read_only_token_cannot_write(client):
    cluster = ready_cluster()
    for text in (token_for(person("vic", "viewer")), token_for(person("ada", "admin"), read_only=True)):
        assert client.get(f"/api/v1/clusters/{cluster.pk}/", headers=bearer(text)).status_code == 200
        res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "check"}, content_type="application/json",
                          headers=bearer(text))
        assert res.status_code == 403, res.content
    assert not Run.objects.exists()


def test_an_operator_may_not_start_an_admins_kind_and_is_told_why(client):
    cluster = ready_cluster()
    text = token_for(person("otto", "operator"))
    res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "remove"}, content_type="application/json",
                      headers=bearer(text))
    assert res.status_code == 403 and "Admin role needed" in res.json()["detail"]


def test_revoked_and_expired_tokens_get_401_at_once(client):
    user = person("rita", "operator")
    text = token_for(user)
    assert client.get("/api/v1/clusters/", headers=bearer(text)).status_code == 200
    out = io.StringIO()
    call_command("token_revoke", text.split("_")[1], stdout=out)
    assert "revoked" in out.getvalue()
    res = client.get("/api/v1/clusters/", headers=bearer(text))
    assert res.status_code == 401 and res["WWW-Authenticate"].startswith("Bearer")
    old = token_for(user, expires_days=1)
    ApiToken.objects.filter(key_id=old.split("_")[1]).update(expires=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/clusters/", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/clusters/", headers=bearer(old[:-1] + "0")).status_code == 401
    assert client.get("/api/v1/clusters/").status_code in (401, 403)
    live = token_for(user)
    user.is_active = False
    user.save()
    assert client.get("/api/v1/clusters/", headers=bearer(live)).status_code == 401  # a deactivated person's


def test_errors_are_field_keyed_and_refusals_are_sentences(client):
    cluster = ready_cluster()
    text = token_for(person("ola", "admin"))
    res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "bogus"}, content_type="application/json",
                      headers=bearer(text))
    assert res.status_code == 400 and "kind" in res.json()
    res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "maintenance-on", "target": "nobody"},
                      content_type="application/json", headers=bearer(text))
    assert res.status_code == 400 and "Name the CARP node" in res.json()["detail"]
    res = client.post(f"/api/v1/clusters/{cluster.pk}/runs/", {"kind": "handover", "to": "server-2"},
                      content_type="application/json", headers=bearer(text))
    assert res.status_code == 201 and res.json()["target"] == "server-2", res.content
    assert client.get("/api/v1/clusters/99999/", headers=bearer(text)).status_code == 404
    for path in ("/api/v1/clusters/false/", "/api/v1/clusters/false/host-keys/"):  # Schemathesis found a 500 here
        res = client.delete(path, headers={**bearer(text), "If-Match": 'W/"n"'})
        assert res.status_code in (404, 405) and res["Content-Type"] == "application/json", path
    assert client.get("/api/v1/users/", headers=bearer(text)).json()["results"][0]["last_login"] is None
    assert client.post("/api/v1/clusters/99999/runs/", {"kind": "check"}, content_type="application/json",
                       headers=bearer(text)).status_code == 404


def test_no_secret_in_any_answer(client):
    cluster = ready_cluster()
    admin = person("root-admin", "admin")
    text = token_for(admin)
    created = client.post("/api/v1/tokens/", {"name": "ci"}, content_type="application/json", headers=bearer(text))
    assert created.status_code == 201 and created.json()["token"].startswith("carpweb_")
    second = created.json()["token"]
    bodies = [client.get(p, headers=bearer(text)).content.decode() for p in
              ("/api/v1/clusters/", f"/api/v1/clusters/{cluster.pk}/", "/api/v1/runs/", "/api/v1/tokens/")]
    password = crypto.decrypt(cluster.service_ips.get().password_enc)
    for body in bodies:
        for secret in (password, "secretkeybody", text.split("_")[2], second.split("_")[2]):
            assert secret not in body
    listed = json.loads(bodies[3])["results"]
    assert {t["key_id"] for t in listed} == {text.split("_")[1], second.split("_")[1]}
    assert client.delete(f"/api/v1/tokens/{second.split('_')[1]}/", headers=bearer(text)).status_code == 204
    assert client.get("/api/v1/clusters/", headers=bearer(second)).status_code == 401


OPEN_ROUTES = {"api-health", "api-schema", "api-docs"}


def test_every_api_route_asks_for_a_token(client):
    """Anonymous callers get 401 (with WWW-Authenticate) on every API route but health and the schema; a viewer
    reads every list but the operators' (notices, targets) and the admins' (users)."""
    from django.urls import get_resolver, reverse

    names = {k for k in get_resolver().reverse_dict if isinstance(k, str) and k.startswith("api-")}
    writes = {"api-cluster-runs"}
    for name in names - OPEN_ROUTES:
        args = ["ab"] if name == "api-token-detail" else [1] if name.endswith(("-detail", "-runs", "-keys")) else []
        url = reverse(name, args=args)
        res = client.post(url) if name in writes else client.get(url)
        assert res.status_code == 401 and res["WWW-Authenticate"].startswith("Bearer"), name
    for name in OPEN_ROUTES:
        assert client.get(reverse(name)).status_code in (200, 503), name
    text = token_for(person("vi", "viewer"))
    lists = {n for n in names if n.endswith("-list")}
    assert len(lists) == 8, lists
    for name in lists:
        expected = 403 if name in ("api-user-list", "api-notification-target-list", "api-notice-list") else 200
        assert client.get(reverse(name), headers=bearer(text)).status_code == expected, name


DOCUMENT: dict[str, Any] = {"name": "api-web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "interface": "em0",
            "servers": [{"name": f"server-{i}", "address": f"192.0.2.1{i}", "ssh_host": "127.0.0.1",
                         "ssh_port": 22000 + i, "ssh_key": KEY, "preferred_master": i == 1} for i in (1, 2)],
            "service_ips": [{"interface": "em0", "vhid": 10, "addresses": ["192.0.2.100/32"],
                             "password": "ApiCarpPass1"}]}


def test_a_cluster_document_creates_replaces_and_deletes_with_if_match(client):
    text = token_for(person("adm", "admin"))
    bad = client.post("/api/v1/clusters/", {**DOCUMENT, "subnet": "192.0.2.5/24"}, content_type="application/json",
                      headers=bearer(text))
    assert bad.status_code == 400
    assert bad.json()["subnet"] == ["192.0.2.5/24 is an address, not a network: did you mean 192.0.2.0/24?"]
    rows = [{**DOCUMENT["service_ips"][0]}, {"interface": "em0", "vhid": 10, "addresses": ["2001:db8::100"]}]
    bad = client.post("/api/v1/clusters/", {**DOCUMENT, "service_ips": rows}, content_type="application/json",
                      headers=bearer(text)).json()
    assert bad["service_ips"][0] == {} and "needs its prefix length" in " ".join(bad["service_ips"][1]["addresses"])
    assert not client.get("/api/v1/clusters/", headers=bearer(text)).json()["results"]  # nothing half-saved

    created = client.post("/api/v1/clusters/", DOCUMENT, content_type="application/json", headers=bearer(text))
    assert created.status_code == 201, created.content
    body, tag = created.json(), created["ETag"]
    assert [s["name"] for s in body["servers"]] == ["server-1", "server-2"] and body["service_ips"][0]["vhid"] == 10
    assert "BEGIN OPENSSH" not in created.content.decode() and "ApiCarpPass1" not in created.content.decode()
    url = f"/api/v1/clusters/{body['id']}/"
    assert client.get(url, headers=bearer(text))["ETag"] == tag
    again = client.post("/api/v1/clusters/", DOCUMENT, content_type="application/json", headers=bearer(text))
    assert again.status_code == 400 and "name" in again.json()

    changed = {**DOCUMENT, "master_advskew": 20, "servers": [{**s, "ssh_key": ""} for s in DOCUMENT["servers"]],
               "service_ips": [{**DOCUMENT["service_ips"][0], "password": ""}]}
    put = client.put(url, changed, content_type="application/json", headers={**bearer(text), "If-Match": tag})
    assert put.status_code == 200, put.content
    assert put.json()["master_advskew"] == 20 and put["ETag"] != tag
    cluster = Cluster.objects.get(pk=body["id"])
    assert crypto.decrypt(cluster.service_ips.get().password_enc) == "ApiCarpPass1"  # empty keeps the secret
    assert crypto.decrypt(cluster.servers.get(name="server-1").secret_enc) == KEY
    stale = client.put(url, changed, content_type="application/json", headers={**bearer(text), "If-Match": tag})
    assert stale.status_code == 412 and "changed since you read it" in stale.json()["detail"]
    assert client.delete(url, headers={**bearer(text), "If-Match": tag}).status_code == 412
    assert client.delete(url, headers={**bearer(text), "If-Match": put["ETag"]}).status_code == 204
    assert not Cluster.objects.filter(pk=body["id"]).exists()
    assert set(AuditEntry.objects.filter(action__startswith="cluster.").values_list("action", flat=True)) >= {
        "cluster.create", "cluster.update", "cluster.delete"}
    assert set(AuditEntry.objects.filter(action__startswith="cluster.").values_list("token_id", flat=True)) == {
        text.split("_")[1]}


def test_only_an_admin_writes_clusters(client):
    for role in ("viewer", "operator"):
        res = client.post("/api/v1/clusters/", DOCUMENT, content_type="application/json",
                          headers=bearer(token_for(person(f"p-{role}", role))))
        assert res.status_code == 403 and "admin role" in res.json()["detail"]


def test_audit_notices_events_targets_and_users(client):
    admin = person("boss", "admin")
    text = token_for(admin)
    cluster = ready_cluster()
    # notification targets: the page's sentences, the header's value write-only
    bad = client.post("/api/v1/notification-targets/", {"address": "ftp://x.example.org/"},
                      content_type="application/json", headers=bearer(text))
    assert bad.status_code == 400 and bad.json()["address"][0].startswith("Only http:// and https:// webhook URLs")
    made = client.post("/api/v1/notification-targets/", {"address": "oncall@example.org", "cluster": cluster.pk,
                                                         "header_name": "", "header_value": ""},
                       content_type="application/json", headers=bearer(text))
    assert made.status_code == 201 and made.json()["address"] == "oncall@example.org"
    hook = client.post("/api/v1/notification-targets/", {"address": "https://hooks.example.org/T0/secretpath1234",
                                                         "header_name": "X-Token", "header_value": "hdr-s3cret"},
                       content_type="application/json", headers=bearer(text))
    assert hook.status_code == 201, hook.content
    listing = client.get("/api/v1/notification-targets/", headers=bearer(text)).content.decode()
    assert "hdr-s3cret" not in listing and "secretpath" not in listing and "oncall@example.org" in listing
    assert client.delete(f"/api/v1/notification-targets/{made.json()['id']}/", headers=bearer(text)).status_code \
        == 204
    # the audit log, filtered as the page, and exported as the page exports it
    entries = client.get("/api/v1/audit/?action=notify.", headers=bearer(text)).json()["results"]
    assert [e["action"] for e in entries] == ["notify.delete", "notify.add", "notify.add"]
    assert all(e["token_id"] == text.split("_")[1] for e in entries)
    csv_text = b"".join(client.get("/api/v1/audit/export/?as=csv&action=notify.", headers=bearer(text))
                        .streaming_content).decode()
    assert csv_text.splitlines()[0].startswith("id,ts,actor_name") and len(csv_text.splitlines()) == 4
    assert "hdr-s3cret" not in csv_text
    bad_date = client.get("/api/v1/audit/?since=yesterday", headers=bearer(text))
    assert bad_date.status_code == 400 and "since" in bad_date.json()
    # events and notices
    assert client.get(f"/api/v1/events/?cluster={cluster.pk}", headers=bearer(text)).json()["results"] == []
    assert client.get("/api/v1/notices/", headers=bearer(text)).status_code == 200
    # users: admins only, the page's rules
    viewer_text = token_for(person("vv", "viewer"))
    assert client.get("/api/v1/users/", headers=bearer(viewer_text)).status_code == 403
    short = client.post("/api/v1/users/", {"username": "newbie", "password": "short", "role": "operator"},
                        content_type="application/json", headers=bearer(text))
    assert short.status_code == 400 and "password" in short.json()
    new = client.post("/api/v1/users/", {"username": "newbie", "password": "long-enough-pw-1", "role": "operator"},
                      content_type="application/json", headers=bearer(text))
    assert new.status_code == 201 and new.json()["role"] == "operator" and "password" not in new.json()
    changed = client.patch(f"/api/v1/users/{new.json()['id']}/", {"role": "viewer"}, content_type="application/json",
                           headers=bearer(text))
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    last = client.patch(f"/api/v1/users/{admin.pk}/", {"active": False}, content_type="application/json",
                        headers=bearer(text))
    assert last.status_code == 400 and "admin" in last.json()["detail"]


def test_the_tokens_page_shows_a_new_token_once_and_revokes(client):
    user = person("page-user", "operator")
    client.force_login(user)
    page = client.post("/account/tokens/", {"action": "create", "name": "ci", "expires_days": "7"})
    body = page.content.decode()
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    text = body.split('<pre><code>')[1].split("</code>")[0]
    assert text.startswith("carpweb_") and "your role" in body
    again = client.get("/account/tokens/").content.decode()
    assert text not in again and text.split("_")[1] in again  # listed by id, never shown again
    client.logout()
    assert client.get("/api/v1/clusters/", headers=bearer(text)).status_code == 200
    client.force_login(user)
    client.post("/account/tokens/", {"action": "revoke", "key_id": text.split("_")[1]})
    client.logout()
    assert client.get("/api/v1/clusters/", headers=bearer(text)).status_code == 401
    client.force_login(user)
    bad = client.post("/account/tokens/", {"action": "create", "expires_days": "0"})
    assert bad.status_code == 200 and "greater than or equal to 1" in bad.content.decode()  # next to the field
    assert ApiToken.objects.filter(user=user).count() == 1  # nothing made
