"""Shared fixtures: the lab (one per session), a real Celery worker process, and lab-backed clusters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from carpweb import waiting

pytest_plugins = ["lab.pytest_plugin"]
ROOT = Path(__file__).resolve().parent.parent


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


def start_worker(log: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A real `celery worker` process (its own session, so a test can kill it and its pool at once)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "carpweb", "worker", "-l", "info",
                                 "-n", f"{name}{os.getpid()}@%h", *extra], cwd=ROOT,
                                env={**worker_env(), **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    def ready() -> bool:
        if proc.poll() is not None:
            raise waiting.TimedOut("it exited")
        return " ready." in log.read_text()

    try:
        waiting.wait_until(ready, 60, "the Celery worker to say it is ready", every=0.2)
    except waiting.TimedOut as e:
        proc.kill()
        pytest.fail(f"the Celery worker did not start ({e}):\n" + log.read_text()[-3000:])
    proc.log_path = log  # type: ignore[attr-defined]  # tests grep it for secrets
    return proc


@pytest.fixture
def world(fresh_lab, celery_worker_process):
    """The lab with fresh servers, and a real Celery worker: what integration tests run against."""
    return fresh_lab


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process (not eager) on the test database and the configured broker, with the thread
    pool scripts/start and the Procfile use."""
    proc = start_worker(tmp_path_factory.mktemp("worker") / "worker.log", "test", "-P", "threads", "-c", "16")
    yield proc
    _stop(proc)


NOTIFY_RETRIES, NOTIFY_BACKOFF = 2, 0.5  # the notifier's: a failed delivery shows after ~1.5 s, not a minute


@pytest.fixture(scope="session")
def notifier_process(django_db_setup, tmp_path_factory):
    """The deliveries' own worker, as scripts/start and the Procfile run it (threads, queue "notifications")."""
    proc = start_worker(tmp_path_factory.mktemp("notifier") / "notifier.log", "notifier", "-Q", "notifications",
                        "-P", "threads", "-c", "8", env={"CARPWEB_NOTIFY_RETRIES": str(NOTIFY_RETRIES),
                                                         "CARPWEB_NOTIFY_BACKOFF": str(NOTIFY_BACKOFF),
                                                         # the tests' webhook receivers listen on loopback
                                                         "CARPWEB_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
    yield proc
    _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


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
    """carpweb's web process as deployed (gunicorn + uvicorn workers, ASGI), on the test database."""

    def __init__(self, log: Path, workers: int = 1) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log, self.workers = log, workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> WebServer:
        from tests.helpers import wait_until

        self.log_file = open(self.log, "a")  # noqa: SIM115 - the server writes it while it runs
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "carpweb.asgi:application", "-k",
             "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{self.port}", "-w", str(self.workers),
             "--graceful-timeout", "2"], cwd=ROOT, env=worker_env(), stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)

        def answers() -> bool:
            import urllib.error
            import urllib.request

            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                urllib.request.urlopen(self.url + "/favicon.ico", timeout=2)  # noqa: S310 - loopback
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True

        wait_until(answers, limit=60, every=0.1)
        return self

    def kill(self) -> None:
        """SIGKILL the whole web process group, as a crash or an OOM kill would."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


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
