"""A client generated from the live OpenAPI document (openapi-python-client) drives README's curl session against
the lab: a token, a cluster from JSON, host keys fetched and pinned by fingerprint, setup started, waited for, read.
If the schema lied about a path, a field or a type, the generated code would not get through it."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.wsgi import get_wsgi_application
from django.test import Client as DjangoClient

from wizard.services import tokens

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def generated_client(tmp_path: Path):
    """Generate the client package from the schema the app serves now, and import it."""
    schema = tmp_path / "schema.json"
    schema.write_bytes(DjangoClient().get("/api/schema/?format=json").content)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    tool = shutil.which("openapi-python-client", path=env["PATH"])
    assert tool, "openapi-python-client is a dev dependency (pyproject.toml)"
    out = tmp_path / "carpweb_client"
    subprocess.run([tool, "generate", "--path", str(schema), "--output-path", str(out), "--meta", "none"],
                   check=True, env=env, capture_output=True, timeout=300)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("carpweb_client")
    finally:
        sys.path.remove(str(tmp_path))


def test_a_generated_client_sets_up_a_lab_cluster(world, tmp_path):
    from django.contrib.auth.models import User

    api = generated_client(tmp_path)
    from carpweb_client.api.v1 import (  # type: ignore[import-not-found]
        v1_clusters_create,
        v1_clusters_host_keys_create,
        v1_clusters_host_keys_list,
        v1_clusters_list,
        v1_clusters_runs_create,
        v1_runs_retrieve,
    )
    from carpweb_client.models import (  # type: ignore[import-not-found]
        ClusterDocumentRequest,
        HostKeyPinItemRequest,
        HostKeyPinRequest,
        RunCreateRequest,
        RunKindEnum,
        ServerDocumentRequest,
        ServiceIPDocumentRequest,
    )

    admin = User.objects.create_superuser("api-admin", password="pw-for-tests-1")
    _, text = tokens.token_create(user=admin, name="generated client")
    client = api.AuthenticatedClient(base_url="http://testserver", token=text, timeout=httpx.Timeout(60.0),
                                     httpx_args={"transport": httpx.WSGITransport(app=get_wsgi_application())})
    key = Path(world.key_path).read_text()
    servers = [ServerDocumentRequest(name=h, address=world.host(h).address, ssh_host="127.0.0.1",
                                     ssh_port=world.host(h).ssh_port, ssh_key=key, preferred_master=h == "server-1")
               for h in ("server-1", "server-2")]
    document = ClusterDocumentRequest(
        name="api-lab", subnet="192.0.2.0/24", gateway="192.0.2.1", interface="em0", servers=servers,
        service_ips=[ServiceIPDocumentRequest(vhid=1, addresses=["192.0.2.100/32"], interface="em0")])
    cluster = v1_clusters_create.sync(client=client, body=document)
    assert cluster.name == "api-lab" and [s.name for s in cluster.servers] == ["server-1", "server-2"], cluster

    offers = v1_clusters_host_keys_list.sync(cluster_pk=cluster.id, client=client)
    for offer in offers:  # what a careful user compares with the lab's own listing before pinning
        assert offer.fingerprint == world.host(offer.server_name).host_key_fingerprint.split()[1], offer
    pinned = v1_clusters_host_keys_create.sync(cluster_pk=cluster.id, client=client, body=HostKeyPinRequest(
        pins=[HostKeyPinItemRequest(server=o.server, fingerprint=o.fingerprint) for o in offers]))
    assert sorted(pinned.pinned) == ["server-1", "server-2"]

    run = v1_clusters_runs_create.sync(id=cluster.id, client=client, body=RunCreateRequest(kind=RunKindEnum.SETUP))
    done = v1_runs_retrieve.sync(id=run.id, client=client, wait=60)
    while str(done.status) in ("pending", "running"):
        done = v1_runs_retrieve.sync(id=run.id, client=client, wait=60)
    failed = [(s.server_name, s.name, s.message) for s in done.steps if str(s.status) == "failed"]
    assert str(done.status) == "ok", failed
    listed = v1_clusters_list.sync(client=client, name="api-lab")
    assert [c.id for c in listed.results] == [cluster.id] and listed.results[0].service_ips[0].master == "server-1"
