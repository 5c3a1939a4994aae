"""Hostile input on every form: never a 500, every refusal explained by its field, what is kept needs no quoting."""

import shlex

import pytest
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wizard import services
from wizard.forms import ClusterForm, InterfaceForm
from wizard.validation import validate_interface

pytestmark = pytest.mark.django_db
HOSTILE = st.one_of(st.text(max_size=300), st.sampled_from([
    "em0; reboot", "$(id)", "`id`", "em0\nid", "em0\x00", "a" * 5000, "192.0.2.1 && rm -rf /", "'\"", "ém0", "🙂"]))
SERVER_FIELDS = ["name", "address", "ssh_host", "ssh_port", "ssh_user", "auth", "private_key", "password",
                 "privilege", "role"]
VALID_ROW = {"name": "server-1", "address": "192.0.2.11", "ssh_host": "", "ssh_port": "22", "ssh_user": "root",
             "auth": "password", "private_key": "", "password": "pw", "privilege": "root", "role": "node"}


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


@pytest.fixture
def cluster():
    return services.cluster_save(cluster=None, data={"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                                                     "vip": "192.0.2.100"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(SERVER_FIELDS), text=HOSTILE)
def test_server_fields_never_500_and_every_rejection_has_a_message(admin_client, cluster, field, text):
    data = {"servers-TOTAL_FORMS": "2", "servers-INITIAL_FORMS": "0", "version": str(cluster.version)}
    for i, row in enumerate([{**VALID_ROW, field: text}, {**VALID_ROW, "name": "server-2", "address": "192.0.2.12"}]):
        data.update({f"servers-{i}-{k}": v for k, v in row.items()})
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/servers/", data)
    assert res.status_code in (200, 302)
    if res.status_code == 200:
        assert "error-text" in res.content.decode()
    cluster.refresh_from_db()
    for server in cluster.servers.all():  # whatever was accepted is shell-safe
        for value in (server.name, server.address, server.ssh_user, server.ssh_host):
            assert shlex.quote(value) == value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE)
def test_interface_field(admin_client, cluster, text):
    res = admin_client.post(f"/clusters/{cluster.pk}/wizard/interface/", {"interface": text})
    assert res.status_code in (200, 302)
    if res.status_code == 200:
        assert "error-text" in res.content.decode()
    else:
        cluster.refresh_from_db()
        assert shlex.quote(cluster.interface) == cluster.interface


@given(text=HOSTILE)
def test_what_validation_accepts_needs_no_quoting(text):
    form = InterfaceForm({"interface": text})
    if form.is_valid():
        validate_interface(form.cleaned_data["interface"])
        assert shlex.quote(form.cleaned_data["interface"]) == form.cleaned_data["interface"]
    cluster_form = ClusterForm({"name": "x", "subnet": "192.0.2.0/24", "gateway": text, "vip": "192.0.2.100",
                                "vhid": 1, "advbase": 1, "vip_prefix_choice": "32"})
    if cluster_form.is_valid():
        assert shlex.quote(cluster_form.cleaned_data["gateway"]) == cluster_form.cleaned_data["gateway"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["username", "password", "role"]), text=HOSTILE)
def test_user_form_fields_never_500(admin_client, field, text):
    data = {"action": "create", "username": "newbie", "password": "a-long-enough-password", "role": "viewer",
            field: text}
    res = admin_client.post("/users/", data)
    assert res.status_code in (200, 302)
    if res.status_code == 200:
        assert "error-text" in res.content.decode()
    User.objects.exclude(username="admin").delete()  # whatever was created (a NUL cannot even be queried on PostgreSQL)
