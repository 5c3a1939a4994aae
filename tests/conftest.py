"""Shared fixtures: the lab (one per session), a real Celery worker process, and lab-backed clusters."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carpweb import processes, waiting

pytest_plugins = ["lab.pytest_plugin"]
ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("unit", "web", "integration", "e2e", "lab")  # the fast ones first: they need no root and no lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the folders in FOLDERS' order (each keeps its own), so a quick failure shows before the lab's."""
    def rank(item: pytest.Item) -> int:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        return FOLDERS.index(parts[0]) if len(parts) > 1 and parts[0] in FOLDERS else len(FOLDERS)

    items.sort(key=rank)


def _db_url(settings_dict: dict) -> str:
    if "sqlite" in settings_dict["ENGINE"]:
        return "sqlite:///" + str(settings_dict["NAME"])
    user = settings_dict.get("USER") or ""
    pw = (":" + settings_dict["PASSWORD"]) if settings_dict.get("PASSWORD") else ""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    return f"postgres://{user}{pw}@{host}:{port}/{settings_dict['NAME']}"


def worker_env() -> dict[str, str]:
    from django.db import connection

    return dict(os.environ, DATABASE_URL=_db_url(connection.settings_dict), CARPWEB_SSH_CONNECT_TIMEOUT="8",
               CARPWEB_SSH_COMMAND_TIMEOUT="15", PYTHONUNBUFFERED="1")


def start_worker(log: Path, name: str, *extra: str, env: dict[str, str] | None = None,
                 entry: str = "worker") -> processes.Child:
    """The Procfile's worker (or `entry`), a real `celery worker` process, on the test database, with `extra`
    arguments after the Procfile's own, once it says it is ready. Its own session: a test can kill its group."""
    try:
        return processes.start(entry, "-n", f"{name}{os.getpid()}@%h", *extra, log=log,
                               env={**worker_env(), **(env or {})}, ready=processes.celery_ready)
    except processes.StartFailed as e:
        pytest.fail(f"the Celery worker did not start: {e}")


@pytest.fixture(scope="session", autouse=True)
def no_database_session_outlives_the_tests(django_db_setup, django_db_blocker):
    """Whatever the tests started holds no connection to the test database when they end (PostgreSQL cannot
    drop a database in use). A thread that ended, such as an event loop's executor thread after asyncio.run,
    leaves its connection to the garbage collector: collect it, then require that nothing else is left."""
    yield
    gc.collect()
    from django.db import connection, connections

    connections.close_all()
    if connection.vendor != "postgresql":
        return

    def others() -> list[tuple[object, ...]]:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pid, application_name, backend_start, state, left(query, 100) "
                           "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            return list(cursor.fetchall())

    try:  # a process stopped a moment ago: its server process may take a moment to end
        waiting.wait_until(lambda: not others(), 5, "the test database's other sessions to end", every=0.1)
    except waiting.TimedOut:
        pytest.fail(f"sessions on the test database outlive the tests: {others()}")
    finally:
        connections.close_all()


@pytest.fixture
def world(fresh_lab, celery_worker_process):
    """The lab with fresh servers, and a real Celery worker: what integration tests run against."""
    return fresh_lab


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process (not eager) on the test database and the configured broker, with the thread
    pool scripts/start and the Procfile use."""
    proc = start_worker(tmp_path_factory.mktemp("worker") / "worker.log", "test", "-c", "16")
    yield proc
    proc.stop(grace=20)


NOTIFY_RETRIES, NOTIFY_BACKOFF = 2, 0.5  # the notifier's: a failed delivery shows after ~1.5 s, not a minute


@pytest.fixture(scope="session")
def notifier_process(django_db_setup, tmp_path_factory):
    """The deliveries' own worker, as scripts/start and the Procfile run it (threads, queue "notifications")."""
    proc = start_worker(tmp_path_factory.mktemp("notifier") / "notifier.log", "notifier", entry="notifier",
                        env={"CARPWEB_NOTIFY_RETRIES": str(NOTIFY_RETRIES),
                             "CARPWEB_NOTIFY_BACKOFF": str(NOTIFY_BACKOFF),
                             # the tests' webhook receivers listen on loopback
                             "CARPWEB_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
    yield proc
    proc.stop(grace=20)


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    """Debian's Chromium through Playwright (never a downloaded browser), at laptop width."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CARPWEB_REQUIRE_LAB") == "1":
            pytest.fail("Debian's chromium is missing (scripts/bootstrap installs it)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test and of its
    # teardown are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1366, "height": 900})
        pg.set_default_timeout(30000)
        violations: list[str] = []
        pg.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        pg.csp_violations = violations  # type: ignore[attr-defined]
        yield pg
        browser.close()
        # While Playwright runs, this thread's code sees its own database connections (asgiref's Local follows
        # the context, and Playwright's greenlet has one): close the test's here, or PostgreSQL cannot drop the
        # test database at the end ("being accessed by other users").
        from django.db import connections

        connections.close_all()


class WebServer:
    """The Procfile's web (gunicorn + uvicorn workers, ASGI), as deployed, on the test database."""

    def __init__(self, log: Path, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.log, self.workers, self.env = log, workers, env or {}
        self.port = processes.free_port()  # kept: a test restarts the web where its page expects it
        self.child: processes.Child | None = None

    def start(self) -> WebServer:
        try:
            self.child, self.url = processes.web("-w", str(self.workers), "--graceful-timeout", "2", log=self.log,
                                                 env={**worker_env(), **self.env}, port=self.port)
        except processes.StartFailed as e:
            pytest.fail(f"the web did not start: {e}")
        return self

    def kill(self) -> None:
        """SIGKILL the whole web process group, as a crash or an OOM kill would."""
        if self.child is not None:
            self.child.kill(deadline=0)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=15)


@pytest.fixture(scope="session")
def collected_static(django_db_setup):
    """What scripts/start does before serving: static files collected where whitenoise serves them from."""
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=worker_env(),
                   check=True, timeout=120)


@pytest.fixture
def web_server(collected_static, tmp_path):
    server = WebServer(tmp_path / "web.log").start()
    yield server
    server.stop()
