"""scripts/start's supervisor: a child that dies is named with its log and stops the rest; a stop signal
leaves no process behind; a busy port is refused before anything starts. Real processes, no root."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from carpweb import supervise

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _children(tmp_path: Path, **argv: list[str]) -> list[supervise.Child]:
    return [supervise.Child(name, args, tmp_path / f"{name}.log") for name, args in argv.items()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_a_child_failing_at_start_is_named_with_its_last_lines_and_the_rest_stop(tmp_path, restore_signals):
    children = _children(tmp_path, web=[PY, "-c", "import time; time.sleep(60)"],
                         worker=[PY, "-c", "import sys; print('Usage: celery worker'); "
                                 "print(\"Error: No such option '-q'.\"); sys.exit(2)"])
    out = io.StringIO()
    code = supervise.Supervisor(children, ROOT, tmp_path / "run", out).run(lambda: False, "never shown", limit=30)
    text = out.getvalue()
    assert code == 1
    assert "the worker exited with status 2" in text
    assert "Error: No such option '-q'." in text
    assert "never shown" not in text  # no URL is printed for a carpweb that cannot run jobs
    assert not _alive(children[0].pid)  # the web was stopped with it


def test_a_child_killed_later_stops_everything_and_exits_non_zero(tmp_path, restore_signals):
    children = _children(tmp_path, web=[PY, "-c", "import time; time.sleep(60)"],
                         worker=[PY, "-c", "import time; print('worker ready', flush=True); time.sleep(60)"])
    out = io.StringIO()
    sup = supervise.Supervisor(children, ROOT, tmp_path / "run", out)

    def kill_worker_once_running() -> None:
        while "carpweb is running" not in out.getvalue():
            time.sleep(0.02)
        os.kill(int((tmp_path / "run" / "worker.pid").read_text()), signal.SIGKILL)

    threading.Thread(target=kill_worker_once_running, daemon=True).start()
    code = sup.run(lambda: "worker ready" in children[1].tail(), "carpweb is running: test")
    assert code == 1
    assert "the worker was killed by SIGKILL" in out.getvalue() and "worker ready" in out.getvalue()
    assert not _alive(children[0].pid)
    assert not (tmp_path / "run" / "web.pid").exists()


def test_sigterm_stops_every_child_and_its_whole_group(tmp_path, restore_signals, monkeypatch):
    monkeypatch.setattr(supervise, "STOP_GRACE", 1.0)
    # The "worker" forks a child of its own, as Celery's prefork pool does, and ignores SIGTERM.
    stubborn = "trap '' TERM; sleep 300 & sleep 300"
    children = _children(tmp_path, web=[PY, "-c", "import time; time.sleep(60)"], worker=["sh", "-c", stubborn])
    out = io.StringIO()
    sup = supervise.Supervisor(children, ROOT, tmp_path / "run", out)
    groups: list[int] = []

    def stop_once_running() -> None:
        while "running" not in out.getvalue():
            time.sleep(0.02)
        groups.extend(c.pid for c in children)
        while len(supervise.group_members(groups[1])) < 3:  # sh and its two sleeps
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_running, daemon=True).start()
    started = time.monotonic()
    code = sup.run(lambda: True, "running")
    assert code == 0 and "SIGTERM received, stopping" in out.getvalue()
    assert time.monotonic() - started < 10
    for pgid in groups:
        assert supervise.group_members(pgid) == []


def test_a_busy_port_is_refused_plainly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not supervise.port_free(port)
        res = subprocess.run(["bash", "scripts/start", "--port", str(port)], cwd=ROOT, capture_output=True,
                             text=True, timeout=30, check=False)
    assert res.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert f"scripts/start --port {port + 1}" in res.stderr
