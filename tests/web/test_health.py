"""GET /health/ and `manage.py health`: what machines probe; the worker warnings that people read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.utils import timezone

from tests.helpers import wait_until
from wizard import health
from wizard.models import Cluster, Run

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def viewer_client(client):
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


def _no_worker_env(tmp_path: Path) -> dict[str, str]:
    """A carpweb whose broker no worker listens on: a fresh data dir (embedded) or another Redis database."""
    env = dict(os.environ, CARPWEB_DATA_DIR=str(tmp_path))
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis://"):
        env["CELERY_BROKER_URL"] = broker.rsplit("/", 1)[0] + "/13"
    from tests.conftest import worker_env

    env["DATABASE_URL"] = worker_env()["DATABASE_URL"]
    return env


def test_health_needs_no_login_and_tells_anonymous_callers_only_ok_or_failing(client, celery_worker_process):
    # The worker runs, but on a loaded machine (CI's PostgreSQL + Redis run) one ping can miss the page's 1 s: wait
    # for an answer here; the page then reads it from the cache (WORKERS_CACHE_SECONDS).
    wait_until(lambda: health.workers(fresh=True), limit=30, every=0.1, what="the test worker to answer a ping")
    res = client.get("/health/")
    assert res.status_code == 200
    body = res.json()
    assert body == {"healthy": True, "database": "ok", "broker": "ok", "workers": body["workers"]}
    assert isinstance(body["workers"], int) and body["workers"] >= 1  # how many, never their host names
    viewer = User.objects.create_user("v", password="pw-for-tests-1")
    viewer.groups.set([Group.objects.get_or_create(name="viewer")[0]])
    client.force_login(viewer)
    assert set(client.get("/health/").json()) == set(body)  # a viewer is no admin: the same
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    res = client.get("/health/")
    body = res.json()
    assert any(name.startswith("test") for name in body["workers"]) and "streams" in body
    assert body["beat"] is None or datetime.fromisoformat(body["beat"])
    text = res.content.decode()
    for secret in (settings.SECRET_KEY, *settings.CARPWEB_ENCRYPTION_KEYS):
        assert secret not in text
    assert res["Cache-Control"].startswith("max-age=0")


def test_health_command_exits_0_with_a_worker(celery_worker_process, tmp_path):
    from tests.conftest import worker_env

    res = subprocess.run([sys.executable, "manage.py", "health"], cwd=ROOT, env=worker_env(), capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["workers"]


def test_health_command_exits_1_and_says_why_without_a_worker(tmp_path):
    res = subprocess.run([sys.executable, "manage.py", "health"], cwd=ROOT, env=_no_worker_env(tmp_path),
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    body = json.loads(res.stdout)
    assert body == {**body, "database": "ok", "broker": "ok", "workers": [], "healthy": False}


def test_health_reports_an_unreachable_broker_without_its_password(tmp_path):
    env = dict(_no_worker_env(tmp_path), CELERY_BROKER_URL="redis://carpweb:hunter2-secret@127.0.0.1:9/0")
    res = subprocess.run([sys.executable, "manage.py", "health"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 1
    body = json.loads(res.stdout)
    assert body["broker"] != "ok" and body["workers"] == []
    assert "hunter2" not in res.stdout + res.stderr


def test_error_sentences_keep_credentials_out():
    error = RuntimeError("cannot connect to amqp://guest:s3cret@rabbit:5672//\nsecond line")
    assert health._sentence(error) == "cannot connect to amqp://***@rabbit:5672//"


def _pending_run(age: float) -> Run:
    cluster, _ = Cluster.objects.get_or_create(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1")
    run = Run.objects.create(cluster=cluster, kind="verify")
    Run.objects.filter(pk=run.pk).update(created=timezone.now() - timedelta(seconds=age))
    return run


def test_run_page_says_no_worker_after_ten_seconds_and_stops_saying_it_when_one_answers(viewer_client):
    young = _pending_run(2)
    cache.set(health._CACHE_KEY, [], 60)  # the last ping: nobody answered
    assert "No worker is running" not in viewer_client.get(f"/runs/{young.pk}/").content.decode()
    Run.objects.all().delete()
    old = _pending_run(11)
    body = viewer_client.get(f"/runs/{old.pk}/").content.decode()
    assert "No worker is running: start one with <code>celery -A carpweb worker</code> (scripts/start does)" in body
    cache.set(health._CACHE_KEY, ["celery@elsewhere"], 60)  # a worker answered the next ping
    body = viewer_client.get(f"/runs/{old.pk}/").content.decode()
    assert "No worker is running" not in body and "Waiting for a worker" in body


def test_inventory_polls_a_worker_banner_that_clears_itself(viewer_client):
    page = viewer_client.get("/").content.decode()
    assert 'hx-get="/health/workers/"' in page and "every 5s" in page
    cache.set(health._CACHE_KEY, [], 60)
    assert "No worker is running" in viewer_client.get("/health/workers/").content.decode()
    cache.set(health._CACHE_KEY, ["celery@elsewhere"], 60)
    assert viewer_client.get("/health/workers/").content.decode().strip() == ""


def test_favicon_is_served_and_linked(viewer_client):
    res = viewer_client.get("/favicon.ico")
    assert res.status_code == 301 and res["Location"].endswith("favicon.svg")
    assert 'rel="icon"' in viewer_client.get("/").content.decode()
    assert (ROOT / "static" / "favicon.svg").read_text().startswith("<svg")
