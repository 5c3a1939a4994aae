"""Run carpweb's processes, the Procfile's entries (web, worker, notifier, collector; beat with --beat), as one
unit for `scripts/start`, and never half of it.

    python -m carpweb.supervise --port 8000 [--beat] [--web-only] [--admin-password-file FILE]

- Refuses a busy port with a sentence, before anything starts.
- Each child runs in its own session (process group) with its output in DATA_DIR/log/<name>.log
  (carpweb.processes starts and stops them).
- Prints the URL only once the web answers /health/ and (unless --web-only) a worker answers a ping.
- If any child exits, at start or later, it names the child, shows its last log lines, stops the others
  and exits 1: pages are never served while runs cannot execute.
- SIGINT or SIGTERM stops every child (SIGTERM, then SIGKILL to the whole group) and exits 0.

Why not honcho, which runs a Procfile too and stops all when one exits: it has no readiness step (it would
print nothing like "ready at URL", or print it while the worker cannot run jobs yet), it writes every process's
output interleaved on one terminal (here each has a log, and the one that died is shown), and it gives a
process 5 s after SIGTERM where gunicorn's graceful stop wants longer.

No Django import here: this module only starts processes and watches them (pidfds and a signal pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from carpweb import processes
from carpweb.processes import Child

WORKER_THREADS = 64  # runs in flight in scripts/start's worker (see README, "A fleet at a time")
START_LIMIT = 90.0  # seconds for the web to answer and a worker to answer a ping


class StartError(Exception):
    """carpweb could not start; the message says what to do."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As gunicorn binds: connections of a carpweb that just stopped (TIME_WAIT) do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def busy_port_message(port: int) -> str:
    return (f"carpweb: port {port} on 127.0.0.1 is already in use, probably by another carpweb (scripts/start). "
            f"Stop that one, or start this one on another port: scripts/start --port {port + 1}. "
            f"`ss -ltnp 'sport = :{port}'` shows which process holds it.")


def health(url: str) -> dict[str, object] | None:
    """The web's /health/ answer (200 or 503 both carry it), or None while the web does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=3) as res:  # noqa: S310 - our own loopback URL
            return json.loads(res.read())
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class Supervisor:
    def __init__(self, children: list[Child], cwd: Path, pid_dir: Path, out: object = sys.stdout) -> None:
        self.children, self.cwd, self.pid_dir = children, cwd, pid_dir
        self.out = out
        self.signal_r, self.signal_w = os.pipe()
        os.set_blocking(self.signal_w, False)
        self.stopping = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)  # type: ignore[call-overload]

    def _on_signal(self, signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.signal_w, bytes([signum]))

    def install_signals(self) -> None:
        # Set explicitly: a shell may have started us with SIGINT ignored (a background job).
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def start(self) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            child.start(self.cwd, self.pid_dir)

    def exited(self, timeout: float | None) -> Child | str | None:
        """Block until a child exits (returns it), a stop signal arrives (returns its name) or `timeout`."""
        fds = {c.pidfd: c for c in self.children if c.pidfd >= 0}
        ready, _, _ = select.select([self.signal_r, *fds], [], [], timeout)
        if self.signal_r in ready:
            signum = os.read(self.signal_r, 1)[0]
            return signal.Signals(signum).name
        for fd in ready:
            return fds[fd]
        return None

    def report(self, child: Child) -> None:
        self.say(f"\ncarpweb: the {child.name} {child.how_it_ended()}. Its last lines ({child.log}):")
        self.say("    " + child.tail().replace("\n", "\n    "))
        self.say("carpweb: stopping the other processes, so pages are not served while runs cannot execute.")

    def stop_all(self) -> None:
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + processes.STOP_GRACE
        for child in self.children:
            child.kill(deadline)
        for child in self.children:
            with contextlib.suppress(FileNotFoundError):
                (self.pid_dir / f"{child.name}.pid").unlink()

    def wait_ready(self, ready: Callable[[], bool], limit: float) -> Child | str | None:
        """Ask `ready` until it says yes; a child's exit or a stop signal ends the wait first."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if ready():
                return None
            event = self.exited(timeout=0.5)
            if event is not None:
                return event
        raise StartError(f"carpweb: gave up after {limit:g} s waiting for it to be ready. Logs: "
                         + ", ".join(str(c.log) for c in self.children))

    def run(self, ready: Callable[[], bool], banner: str, limit: float = START_LIMIT) -> int:
        self.install_signals()
        self.start()
        try:
            event = self.wait_ready(ready, limit)
            if event is None:
                self.say(banner)
                event = self.exited(timeout=None)
            if isinstance(event, Child):
                self.report(event)
                return 1
            self.say(f"\ncarpweb: {event} received, stopping.")
            return 0
        except StartError as e:
            self.say(str(e))
            return 1
        finally:
            self.stop_all()


def build_children(args: argparse.Namespace, data_dir: Path) -> list[Child]:
    """The Procfile's entries: all but beat (unless --beat), or only the web (--web-only), on loopback."""
    logs = data_dir / "log"
    logs.mkdir(parents=True, exist_ok=True)
    names = [n for n in processes.procfile() if (n != "beat" or args.beat) and (n == "web" or not args.web_only)]
    env = {"CARPWEB_BIND": f"127.0.0.1:{args.port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_CMD_ARGS": "--graceful-timeout 5",  # within the supervisor's own grace before SIGKILL
           "CARPWEB_WORKER_THREADS": str(args.concurrency)}
    return [Child(name, processes.argv(name), logs / f"{name}.log", env=env) for name in names]


def banner(args: argparse.Namespace, url: str, data_dir: Path) -> str:
    lines = ["", f"carpweb is running: {url}"]
    if args.admin_password_file:
        password = Path(args.admin_password_file).read_text().strip()
        lines.append(f"log in as: admin / {password}   (stored in {args.admin_password_file})")
    lines.append(f"health: {url}health/   logs: {data_dir / 'log'}/")
    if args.web_only:
        lines.append("web only: runs wait until a worker answers (celery -A carpweb worker, same database and broker)")
    lines.append("stop with Ctrl-C")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m carpweb.supervise")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--beat", action="store_true", help="also run celery beat (drift checks, the reaper)")
    ap.add_argument("--web-only", action="store_true", help="only the web: workers run elsewhere")
    ap.add_argument("--concurrency", type=int, default=WORKER_THREADS, help="runs the worker carries at once")
    ap.add_argument("--admin-password-file", default="")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    data_dir = Path(os.environ.get("CARPWEB_DATA_DIR") or root / "var").resolve()
    if not port_free(args.port):
        print(busy_port_message(args.port), file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{args.port}/"
    os.environ.setdefault("CARPWEB_BASE_URL", url)  # the links in notifications
    supervisor = Supervisor(build_children(args, data_dir), root, data_dir / "run")

    def ready() -> bool:
        """The web answers /health/ and, unless --web-only, a worker answers its ping."""
        answer = health(url + "health/")
        return answer is not None and (args.web_only or bool(answer.get("workers")))

    return supervisor.run(ready, banner(args, url, data_dir))


if __name__ == "__main__":
    sys.exit(main())
