"""README's first command, exactly as written, from a clean clone of HEAD: a newcomer's path to a green run.

The clone reuses this checkout's installed .venv and node_modules (symlinks, allowed by issue 9 to keep CI
time down), but everything it runs (scripts/start, scripts/bootstrap, the code) is the clone's own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from carpweb import waiting
from lab.pytest_plugin import require_lab

pytestmark = [pytest.mark.lab, pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# What a newcomer's shell would not have: this suite's database, broker and data dir.
DROP = ("DATABASE_URL", "CELERY_BROKER_URL", "CARPWEB_DATA_DIR", "CARPWEB_SSH_CONNECT_TIMEOUT",
        "CARPWEB_SSH_COMMAND_TIMEOUT", "CARPWEB_RUN_TIMEOUT", "DJANGO_ALLOW_ASYNC_UNSAFE")


def readme_commands() -> list[str]:
    """The commands of README's Quickstart block, comments removed."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart[^\n]*\n+```sh\n(.*?)```", text, re.S)
    assert block, "README has no Quickstart sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


class Started:
    """A command in its own process group, its output collected line by line."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, limit: float) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not re.search(pattern, self.output):
                raise waiting.TimedOut("the process exited")
            return re.search(pattern, self.output)

        try:
            return waiting.wait_until(found, limit, repr(pattern), every=0.1)
        except waiting.TimedOut as e:
            raise AssertionError(f"no {pattern!r} in the output of {self.proc.args!r} ({e}):\n"
                                 f"{self.output[-4000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def processes_of(clone: Path) -> list[str]:
    """Processes whose working directory or command line lies in the clone."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if str(clone) in cmdline or cwd.startswith(str(clone)):
            found.append(f"{pid} {cmdline.strip()} (cwd {cwd})")
    return found


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    require_lab()
    target = tmp_path / "carpweb"
    subprocess.run(["git", "-c", "safe.directory=*", "clone", "--quiet", str(ROOT), str(target)], check=True,
                   timeout=120)
    for cached in (".venv", "node_modules"):
        (target / cached).symlink_to(ROOT / cached)
    yield target
    for line in processes_of(target):
        os.kill(int(line.split()[0]), signal.SIGKILL)
    subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lab", "down"], cwd=target, check=False, timeout=120)


def _env() -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**{k: v for k, v in os.environ.items() if k not in DROP}, "CARPWEB_PORT": str(port)}


def _log_in(page, url: str, password: str) -> None:
    page.goto(url)
    if page.locator("input[name=username]").count():  # the second start finds the session still valid
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
    page.wait_for_selector("text=lab-demo")


def test_readme_first_command_from_a_clean_clone_to_a_green_run(clone, browser_page):
    page = browser_page
    command = readme_commands()[0]
    assert command.startswith("scripts/start"), command
    env = _env()
    start = Started(command, clone, env)
    try:
        url = start.wait_for(r"carpweb is running: (http://\S+)", 300).group(1)
        password = start.wait_for(r"log in as: admin / (\S+)", 5).group(1)
        assert url.endswith(f":{env['CARPWEB_PORT']}/")
        _log_in(page, url, password)
        # The newcomer's path: lab-demo, Review, confirm the host keys, run setup.
        page.click("text=lab-demo")
        page.click("text=Open Review")
        page.click("text=Fetch and confirm host keys")
        page.click("text=I have checked these fingerprints: pin them")
        page.wait_for_selector("text=Pinned the host keys")
        page.click("text=Run preflight, prepare, verify and configure the service IP")
        page.wait_for_selector("[data-run-status=ok]", timeout=120000)
        assert "Succeeded" in page.inner_text("[data-run-status]")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "quickstart-green-run.png"), full_page=True)

        # The worker dies: scripts/start names it with its last lines, stops the web and exits non-zero.
        worker = int((clone / "var/run/worker.pid").read_text())
        os.kill(worker, signal.SIGKILL)
        assert start.proc.wait(60) != 0
        assert "the worker was killed by SIGKILL" in start.output
        last_line = (clone / "var/log/worker.log").read_text().strip().splitlines()[-1].strip()
        assert last_line in start.output.split("killed by SIGKILL", 1)[1]  # its log's last lines
        assert processes_of(clone) == []
    finally:
        start.stop()

    # The same command with --web-only (workers elsewhere): a run waits, and the pages say why.
    web_only = Started(command + " --web-only", clone, env)
    manual_worker = None
    try:
        url = web_only.wait_for(r"carpweb is running: (http://\S+)", 300).group(1)
        _log_in(page, url, password)
        page.click("text=lab-demo")
        page.click("button[value=setup]")  # the lab was rebuilt fresh: setup prepares it again
        page.wait_for_selector("text=No worker is running: start one with", timeout=40000)
        assert "celery -A carpweb worker" in page.inner_text("[data-no-worker]")
        run_url = page.url
        page.goto(url)
        page.wait_for_selector("#worker-banner [data-no-worker]", timeout=20000)
        page.screenshot(path=str(ARTIFACTS / "quickstart-no-worker.png"), full_page=True)
        # Do what the message says: the warnings clear by themselves and the waiting run proceeds.
        manual_worker = subprocess.Popen([str(clone / ".venv/bin/celery"), "-A", "carpweb", "worker", "-c", "1"],
                                         cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        page.wait_for_selector("#worker-banner [data-no-worker]", state="detached", timeout=40000)
        page.goto(run_url)
        page.wait_for_selector("[data-run-status=ok]", timeout=60000)
        assert page.locator("[data-no-worker]").count() == 0
    finally:
        if manual_worker is not None:
            os.killpg(manual_worker.pid, signal.SIGTERM)
            manual_worker.wait(30)
        if web_only.proc.poll() is None:
            os.killpg(web_only.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = web_only.proc.wait(60)
        web_only.stop()
    assert code == 0, web_only.output[-3000:]
    assert "SIGINT received, stopping" in web_only.output
    assert processes_of(clone) == []
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith("carplab-")]  # the lab it brought up is down again
