"""carpweb's processes: the Procfile is their one list, and this is the one launcher that starts, watches and
stops them, for scripts/start (carpweb.supervise), the tests' fixtures and the benches.

- `procfile()` reads the Procfile as honcho does (`name: command` lines; anything else, comments included, is
  skipped), and `argv(name, *extra)` runs an entry as honcho and foreman do, under `sh`, so `${VAR:-default}`
  works, with `extra` appended (a later option wins in gunicorn and Celery, so a test can say `-c 2`).
- Each `Child` runs in its own session (process group), its output in its own log file. Stopping it is SIGTERM
  to the process (gunicorn and Celery stop their own workers in order), then SIGKILL to its whole group after a
  grace period, then a wait until no member of the group is left: nothing it started outlives it, so neither do
  its database connections.

No Django import here: this module only starts processes and watches them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from carpweb import waiting

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_]+):\s*(.+)$")  # honcho's grammar (honcho/environ.py)
STOP_GRACE = 10.0  # seconds a child gets to stop after SIGTERM before its whole group is killed
TAIL_LINES = 25


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's entries, name -> command, in their order."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PROCFILE_LINE.match(line)
        if match:
            entries[match.group(1)] = match.group(2).strip()
    return entries


def argv(name: str, *extra: str, path: Path = PROCFILE) -> list[str]:
    """The command line that runs the Procfile's entry `name` (under sh, exec'd, so signals reach it) with
    `extra` arguments after its own."""
    entries = procfile(path)
    if name not in entries:
        raise KeyError(f"the Procfile ({path}) has no entry {name!r}; it has {', '.join(entries)}")
    return ["/bin/sh", "-c", f'exec {entries[name]} "$@"', name, *extra]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with this interpreter's bin directory first on PATH (the Procfile names `celery`,
    `gunicorn` and `python`, as a deployment's virtualenv provides them), and `extra` on top."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return env


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


@dataclass
class Child:
    """One process started in a session of its own, its output in `log`."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int = -1

    def start(self, cwd: Path = ROOT, pid_dir: Path | None = None) -> Child:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=child_env(self.env))
        self.pidfd = os.pidfd_open(self.proc.pid)
        if pid_dir is not None:
            (pid_dir / f"{self.name}.pid").write_text(f"{self.proc.pid}\n")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.wait(timeout)

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(its log is empty)"

    def how_it_ended(self) -> str:
        code = self.proc.poll() if self.proc else None
        if code is None:
            return "is still running"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def says(self, text: str) -> Callable[[], bool]:
        """A readiness check: its log holds `text` (Celery's " ready.")."""
        return lambda: text in self.log.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the child itself: gunicorn and Celery stop their own workers in order."""
        if self.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def kill(self, deadline: float) -> None:
        """Wait for the child until `deadline`, then SIGKILL its whole group (a pool process can outlive its
        parent), and reap it, so nothing of it remains."""
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        # SIGKILL lands asynchronously: an orphan of the group (a pool process) may still be dying.
        with contextlib.suppress(waiting.TimedOut):
            waiting.wait_until(lambda: not group_members(self.pid), 5, f"the {self.name}'s processes to end",
                               every=0.02)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def stop(self, grace: float = STOP_GRACE) -> None:
        self.terminate()
        self.kill(time.monotonic() + grace)

    def wait_ready(self, ready: Callable[[], bool], limit: float = 60) -> Child:
        """Until `ready` says yes; if the child exits first or the wait runs out, it is stopped and the error
        carries the end of its log."""
        def check() -> bool:
            if not self.running():
                raise waiting.TimedOut(f"the {self.name} {self.how_it_ended()}")
            return ready()

        try:
            waiting.wait_until(check, limit, f"the {self.name} to be ready", every=0.1)
        except waiting.TimedOut as e:
            self.stop(grace=2)
            raise StartFailed(f"{e}; the end of its log ({self.log}):\n{self.tail()}") from None
        return self


class StartFailed(Exception):
    """A process did not come up; the message says which, how it ended and what it last wrote."""


def start(name: str, *extra: str, log: Path, env: dict[str, str] | None = None,
          ready: Callable[[Child], Callable[[], bool]] | None = None, limit: float = 60) -> Child:
    """Start the Procfile's `name` (with `extra` arguments and `env` on top of this environment), and wait until
    `ready(child)` says yes when given."""
    child = Child(name, argv(name, *extra), log, env=dict(env or {})).start()
    return child.wait_ready(ready(child), limit) if ready else child


def celery_ready(child: Child) -> Callable[[], bool]:
    return child.says(" ready.")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers(url: str) -> Callable[[], bool]:
    """A readiness check: the URL gets an HTTP answer, whatever its status."""
    def check() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own loopback URL
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    return check


def web(*extra: str, log: Path, env: dict[str, str] | None = None, limit: float = 60,
        port: int = 0) -> tuple[Child, str]:
    """The Procfile's web on loopback, on `port` (0: a free one), once it answers; it and its base URL (no
    slash)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    child = start("web", *extra, log=log, env={**(env or {}), "CARPWEB_BIND": f"127.0.0.1:{port}"},
                  ready=lambda _: answers(url + "/favicon.ico"), limit=limit)
    return child, url
