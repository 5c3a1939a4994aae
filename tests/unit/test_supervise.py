"""scripts/start's supervisor and the launcher under it: the Procfile is the one list of processes; a child that
dies is named with its log and stops the rest; a stop signal leaves no process behind; a busy port is refused
before anything starts. Real processes, no root."""

from __future__ import annotations

import argparse
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

from carpweb import processes, supervise
from carpweb.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _children(tmp_path: Path, **argv: list[str]) -> list[processes.Child]:
    return [processes.Child(name, args, tmp_path / f"{name}.log") for name, args in argv.items()]


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
        wait_until(lambda: "carpweb is running" in out.getvalue(), 30, "the banner")
        os.kill(int((tmp_path / "run" / "worker.pid").read_text()), signal.SIGKILL)

    threading.Thread(target=kill_worker_once_running, daemon=True).start()
    code = sup.run(lambda: "worker ready" in children[1].tail(), "carpweb is running: test")
    assert code == 1
    assert "the worker was killed by SIGKILL" in out.getvalue() and "worker ready" in out.getvalue()
    assert not _alive(children[0].pid)
    assert not (tmp_path / "run" / "web.pid").exists()


def test_sigterm_stops_every_child_and_its_whole_group(tmp_path, restore_signals, monkeypatch):
    monkeypatch.setattr(processes, "STOP_GRACE", 1.0)
    # The "worker" forks a child of its own, as Celery's prefork pool does, and ignores SIGTERM.
    stubborn = "trap '' TERM; sleep 300 & sleep 300"
    children = _children(tmp_path, web=[PY, "-c", "import time; time.sleep(60)"], worker=["sh", "-c", stubborn])
    out = io.StringIO()
    sup = supervise.Supervisor(children, ROOT, tmp_path / "run", out)
    groups: list[int] = []

    def stop_once_running() -> None:
        wait_until(lambda: "running" in out.getvalue(), 30, "the banner")
        groups.extend(c.pid for c in children)
        wait_until(lambda: len(processes.group_members(groups[1])) >= 3, 30, "sh and its two sleeps")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_running, daemon=True).start()
    started = time.monotonic()
    code = sup.run(lambda: True, "running")
    assert code == 0 and "SIGTERM received, stopping" in out.getvalue()
    assert time.monotonic() - started < 10
    for pgid in groups:
        assert processes.group_members(pgid) == []


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


def test_the_procfile_is_read_as_honcho_reads_it(tmp_path):
    (tmp_path / "Procfile").write_text("# a comment: skipped\nweb: serve -b ${BIND:-0.0.0.0:1}\n\n"
                                       "not an entry\nworker_2:   work --fast  \n")
    assert processes.procfile(tmp_path / "Procfile") == {"web": "serve -b ${BIND:-0.0.0.0:1}",
                                                        "worker_2": "work --fast"}
    with pytest.raises(KeyError, match="has no entry 'beat'; it has web, worker_2"):
        processes.argv("beat", path=tmp_path / "Procfile")


def test_an_entry_runs_under_sh_with_its_defaults_and_the_extra_arguments_last(tmp_path):
    (tmp_path / "Procfile").write_text("show: printf '%s|' ${WHO:-nobody} -c 64\n")
    child = processes.Child("show", processes.argv("show", "-c", "2 words", path=tmp_path / "Procfile"),
                            tmp_path / "show.log", env={"WHO": "carpweb"}).start()
    assert child.wait(10) == 0
    assert child.log.read_text() == "carpweb|-c|64|-c|2 words|"


def test_scripts_start_runs_the_procfiles_entries_on_loopback(tmp_path):
    def names(**flags: object) -> list[str]:
        args = argparse.Namespace(port=8123, concurrency=7, **{"beat": False, "web_only": False, **flags})
        return [c.name for c in supervise.build_children(args, tmp_path)]

    assert names() == ["web", "worker", "notifier", "collector"]
    assert names(beat=True) == ["web", "worker", "notifier", "collector", "beat"]
    assert names(web_only=True) == ["web"]
    args = argparse.Namespace(port=8123, concurrency=7, beat=False, web_only=True)
    web = supervise.build_children(args, tmp_path)[0]
    assert web.argv == processes.argv("web") and web.env["CARPWEB_BIND"] == "127.0.0.1:8123"
    assert (tmp_path / "log").is_dir() and web.log == tmp_path / "log" / "web.log"


def test_a_child_that_does_not_come_up_is_stopped_and_its_log_shown(tmp_path):
    child = processes.Child("worker", ["sh", "-c", "echo starting; sleep 300"], tmp_path / "w.log").start()
    with pytest.raises(processes.StartFailed, match=r"(?s)gave up after 0.5 s waiting for the worker.*starting"):
        child.wait_ready(lambda: False, limit=0.5)
    assert processes.group_members(child.pid) == []
    dead = processes.Child("web", ["sh", "-c", "echo no such option; exit 2"], tmp_path / "d.log").start()
    with pytest.raises(processes.StartFailed, match=r"(?s)the web exited with status 2.*no such option"):
        dead.wait_ready(lambda: False, limit=30)
