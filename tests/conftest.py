"""Shared fixtures: the lab (one per session), a real Celery worker process, and lab-backed clusters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["lab.pytest_plugin"]
ROOT = Path(__file__).resolve().parent.parent


def _db_url(settings_dict: dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return "sqlite:///" + str(settings_dict["NAME"])
    user = settings_dict.get("USER") or ""
    pw = (":" + settings_dict["PASSWORD"]) if settings_dict.get("PASSWORD") else ""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    return f"postgres://{user}{pw}@{host}:{port}/{settings_dict['NAME']}"


def worker_env() -> dict[str, str]:
    from django.db import connection

    return dict(os.environ, DATABASE_URL=_db_url(connection.settings_dict), CARPWEB_SSH_CONNECT_TIMEOUT="8",
               CARPWEB_SSH_COMMAND_TIMEOUT="15", PYTHONUNBUFFERED="1")


def start_worker(log: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A real `celery worker` process (its own session, so a test can kill it and its pool at once)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "carpweb", "worker", "-l", "info",
                                 "-n", f"{name}{os.getpid()}@%h", *extra], cwd=ROOT,
                                env={**worker_env(), **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the Celery worker did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    proc.log_path = log  # type: ignore[attr-defined]  # tests grep it for secrets
    return proc


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process (not eager) on the test database and the configured broker."""
    proc = start_worker(tmp_path_factory.mktemp("worker") / "worker.log", "test", "-c", "4")
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
