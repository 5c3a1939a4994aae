"""The REST API: tokens (shown once, kept as a keyed hash, read-only, revoked, expired), roles, the contract's
paths, field-keyed errors, and no secret in any answer. No lab: runs are started, not executed."""

import io
import json
import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone

from tests.helpers import make_cluster
from wizard import crypto
from wizard.models import ApiToken, AuditEntry, Run, Server
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
    assert client.get("/api/v1/clusters/99999/", headers=bearer(text)).status_code == 404
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
    reads every list."""
    from django.urls import get_resolver, reverse

    names = {k for k in get_resolver().reverse_dict if isinstance(k, str) and k.startswith("api-")}
    args: dict[str, list[object]] = {"api-cluster-detail": [1], "api-cluster-runs": [1], "api-run-detail": [1],
                                     "api-token-detail": ["ab"]}
    assert names - OPEN_ROUTES - set(args) == {"api-cluster-list", "api-run-list", "api-token-list"}
    for name in names - OPEN_ROUTES:
        url = reverse(name, args=args.get(name, []))
        res = client.post(url) if name == "api-cluster-runs" else client.get(url)
        assert res.status_code == 401 and res["WWW-Authenticate"].startswith("Bearer"), name
    for name in OPEN_ROUTES:
        assert client.get(reverse(name)).status_code in (200, 503), name
    text = token_for(person("vi", "viewer"))
    for name in ("api-cluster-list", "api-run-list", "api-token-list"):
        assert client.get(reverse(name), headers=bearer(text)).status_code == 200, name
