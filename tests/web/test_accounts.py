"""Who may do what, for real: a role change changes the role (or is refused with a reason), accounts can be
deactivated, an admin-made password works once, people change their own; failed logins echo no unknown name;
the CSV export is no formula; logins are limited per address behind trusted proxies only; runs check roles in
the service itself; production refuses to start without its encryption keys."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory

from tests.conftest import ROOT
from tests.helpers import make_cluster
from wizard import services
from wizard.clientip import client_ip
from wizard.models import Account, AuditEntry, Run
from wizard.roles import Role, role_of

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"


def person(name: str, role: str, superuser: bool = False) -> User:
    user = User.objects.create_superuser(name, password=PASSWORD) if superuser else \
        User.objects.create_user(name, password=PASSWORD)
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    return user


def logs_in(username: str, password: str, address: str = "192.0.2.200") -> bool:
    res = Client().post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)
    return res.status_code == 302 and res["Location"] == "/"


def client_of(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_setting_viewer_on_a_superuser_really_demotes_them():
    first, second = person("first", "admin", superuser=True), person("second", "admin", superuser=True)
    res = client_of(first).post("/users/", {"action": "role", "user": second.pk, "role": "viewer"}, follow=True)
    assert "second is now viewer" in res.content.decode()
    second.refresh_from_db()
    assert role_of(second) == Role.VIEWER and not second.is_superuser and not second.is_staff
    assert client_of(second).get("/users/").status_code == 403


def test_the_last_active_admin_can_be_neither_demoted_nor_deactivated():
    only = person("only", "admin", superuser=True)
    with pytest.raises(services.ServiceError, match="only is the last active admin"):
        services.user_set_role(actor=None, user_id=str(only.pk), role="operator")
    with pytest.raises(services.ServiceError, match="last active admin"):
        services.user_set_active(actor=None, user_id=str(only.pk), active=False)
    res = client_of(only).post("/users/", {"action": "deactivate", "user": only.pk}, follow=True)
    assert "cannot change your own" in res.content.decode()
    only.refresh_from_db()
    assert only.is_active and role_of(only) == Role.ADMIN


def test_a_deactivated_account_has_no_access_and_it_is_audited():
    admin, viewer = person("admin", "admin", superuser=True), person("vera", "viewer")
    session = client_of(viewer)
    assert session.get("/").status_code == 200
    client_of(admin).post("/users/", {"action": "deactivate", "user": viewer.pk})
    viewer.refresh_from_db()
    assert not viewer.is_active and role_of(viewer) is None
    assert session.get("/").status_code == 302  # the open session no longer counts
    assert not logs_in("vera", PASSWORD)
    entry = AuditEntry.objects.filter(action="user.update", object_repr="vera").first()
    assert entry and entry.after == {"is_active": False} and entry.actor_name == "admin"
    client_of(admin).post("/users/", {"action": "reactivate", "user": viewer.pk})
    assert logs_in("vera", PASSWORD)


def test_an_admin_made_password_works_once_then_the_person_chooses_their_own():
    admin = person("admin", "admin", superuser=True)
    client_of(admin).post("/users/", {"action": "create", "username": "newbie", "password": "first-Password-1",
                                      "role": "operator"})
    assert Account.objects.get(user__username="newbie").must_change_password
    newbie = Client()
    newbie.post("/login/", {"username": "newbie", "password": "first-Password-1"})
    res = newbie.get("/")
    assert res.status_code == 302 and res["Location"] == "/account/password/"
    weak = newbie.post("/account/password/", {"old_password": "first-Password-1", "new_password1": "password",
                                              "new_password2": "password"})
    assert "too common" in weak.content.decode() and "new_password2" in weak.context["form"].errors
    newbie.post("/account/password/", {"old_password": "first-Password-1", "new_password1": "my-own-Secret-77",
                                       "new_password2": "my-own-Secret-77"})
    assert newbie.get("/").status_code == 200  # the session stays, and the inventory opens
    assert not Account.objects.get(user__username="newbie").must_change_password
    entry = AuditEntry.objects.filter(action="user.update", object_repr="newbie").latest("id")
    assert entry.after == {"password": "(secret) replaced"} and entry.actor_name == "newbie"
    assert "my-own-Secret-77" not in str(list(AuditEntry.objects.values()))


def test_a_failed_login_records_a_known_name_but_never_an_unknown_one(client):
    person("alice", "viewer")
    client.post("/login/", {"username": "alice", "password": "wrong-one"})
    client.post("/login/", {"username": "hunter2-typed-in-the-user-field", "password": "x"})
    failed = list(AuditEntry.objects.filter(action="login.failed").order_by("id").values_list("after", flat=True))
    assert failed == [{"username": "alice"}, {"username": "(not an account)"}]
    assert "hunter2" not in str(list(AuditEntry.objects.values()))


def test_csv_export_cells_are_never_formulas():
    admin = person("admin", "admin", superuser=True)
    evil = person("=HYPERLINK(\"http://x\")", "viewer")
    client_of(admin).post("/users/", {"action": "role", "user": evil.pk, "role": "operator"})
    res = client_of(admin).get("/audit/?format=csv")
    body = b"".join(res.streaming_content).decode()  # type: ignore[attr-defined]
    cells = [cell for row in csv.reader(io.StringIO(body)) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert "'=HYPERLINK(\"http://x\")" in cells


def test_create_admin_takes_its_password_from_stdin_never_argv(monkeypatch):
    with pytest.raises(CommandError):
        call_command("create_admin", "root2", "--password", "on-the-command-line")
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin-Pass-9\n"))
    out = io.StringIO()
    call_command("create_admin", "root2", "--password-stdin", stdout=out)
    assert "from-stdin-Pass-9" not in out.getvalue()
    assert logs_in("root2", "from-stdin-Pass-9")
    assert role_of(User.objects.get(username="root2")) == Role.ADMIN
    User.objects.filter(username="root2").update(is_active=False)  # locked out: the command is the way back in
    monkeypatch.setattr(sys, "stdin", io.StringIO("reset-Pass-10\n"))
    call_command("create_admin", "root2", "--password-stdin", stdout=io.StringIO())
    assert logs_in("root2", "reset-Pass-10") and not logs_in("root2", "from-stdin-Pass-9")
    assert User.objects.filter(username="root2", is_superuser=True).count() == 1


def test_one_address_trying_many_names_is_stopped(settings, client):
    settings.CARPWEB_LOGIN_ADDRESS_LIMIT = 5
    person("alice", "viewer")
    for i in range(5):
        client.post("/login/", {"username": f"guess-{i}", "password": "x"}, REMOTE_ADDR="198.51.100.7")
    res = client.post("/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7")
    assert res.status_code != 302 or res["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    other = Client().post("/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.8")
    assert other.status_code == 302 and other["Location"] == "/"


def test_forwarded_for_counts_only_from_a_trusted_proxy(settings):
    rf = RequestFactory()
    spoofed = rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert client_ip(spoofed) == "203.0.113.9"
    settings.CARPWEB_TRUSTED_PROXIES = "127.0.0.1/32,10.0.0.0/8"
    proxied = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.20, 10.0.0.5")
    assert client_ip(proxied) == "198.51.100.20"  # the right-most address no trusted proxy added


def test_runs_check_the_role_in_the_service_whoever_calls_it():
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    operator = person("otto", "operator")
    for kind in ("configure", "remove", "prepare", "setup"):
        with pytest.raises(services.RoleRequired, match="Admin role needed"):
            services.run_start(cluster=cluster, kind=kind, user=operator)
    with pytest.raises(services.RoleRequired, match="Operator role needed"):
        services.run_start(cluster=cluster, kind="check", user=person("vic", "viewer"))
    assert not Run.objects.exists()


def test_production_without_encryption_keys_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CARPWEB_ENCRYPTION_KEYS"}
    env.update(CARPWEB_SECRET_KEY="x" * 50, CARPWEB_DATA_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0 and "CARPWEB_ENCRYPTION_KEYS is not" in res.stderr
    assert not (tmp_path / "dev-keys.json").exists()
