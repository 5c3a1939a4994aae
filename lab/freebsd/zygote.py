"""One host's emulator daemon: the FreeBSD commands run as forks of one process that has them all loaded.

Inside the host's namespaces it listens on /etc/carplab/emu.sock (the host's own /etc). The command client
(lab/native/emu.c, what /usr/local/sbin/ifconfig and the others are) sends its name, arguments, working
directory and environment, and its stdin, stdout and stderr as file descriptors. For each request the daemon
forks; the child takes the caller's descriptors and user (the socket's peer credentials) and runs the command
exactly as freebsd.main.run would in a process of its own. The exit status goes back to the client, which exits
with it. The daemon itself runs no command, so no state carries from one command to the next.

    python3 -IS zygote.py          (lab/world.py starts it; one per host)
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import signal
import socket
import struct
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from freebsd import main  # noqa: E402  # the whole emulator, imported once, before any fork
from freebsd.state import host_config  # noqa: E402

SOCKET = "/etc/carplab/emu.sock"
MAX_REQUEST = 1 << 20


def _child(conn: socket.socket, fds: list[int], fields: list[str]) -> int:
    """In the forked child: become the caller's process (descriptors, user, environment), run the command."""
    name, cwd, count = fields[0], fields[1], int(fields[2])
    args, env = fields[3:3 + count], fields[3 + count:]
    uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1:]
    conn.close()
    os.setpgid(0, 0)  # its own group: the daemon can end it, and what it starts, if the caller goes away
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    if gid != os.getgid():
        os.setgroups([])
        os.setgid(gid)
    if uid != os.getuid():
        os.setgroups([])
        os.setuid(uid)
    os.environ.clear()
    os.environ.update(dict(e.split("=", 1) for e in env if "=" in e))
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin for as long as it lives
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = [name, *args]
    try:
        main.run(name)
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        sys.stderr.write("%s\n" % e.code)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()


class Daemon:
    def __init__(self, path: str = SOCKET) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o666)  # every user's commands come here; each child runs as its caller
        self.listener.listen(256)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "reap")
        self.running: dict[int, socket.socket] = {}  # child pid -> the client waiting for its status
        ready = os.path.join(host_config()["hostdir"], "run", "emu.ready")
        with open(ready + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(ready + ".tmp", ready)  # the lab controller waits for this

    def _request(self, conn: socket.socket) -> tuple[list[int], list[str]] | None:
        conn.settimeout(5)
        data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        if len(data) < 4 or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return None
        size = struct.unpack("!I", data[:4])[0]
        body = data[4:]
        while len(body) < min(size, MAX_REQUEST):
            more = conn.recv(size - len(body))
            if not more:
                break
            body += more
        fields = body.decode(errors="surrogateescape").split("\0")
        if len(body) != size or len(fields) < 4:
            for fd in fds:
                os.close(fd)
            return None
        return fds, fields[:-1]

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request = self._request(conn)
        except OSError:
            request = None
        if request is None:
            conn.close()
            return
        fds, fields = request
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gc.disable()  # a short-lived command: a collection would only copy pages
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                self.selector.close()
                self.listener.close()
                for other in self.running.values():
                    other.close()
                code = _child(conn, fds, fields)
            finally:
                os._exit(code & 0xFF if code >= 0 else 1)
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        self.running[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wakeup_r, 512):
                pass
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.running.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.sendall(struct.pack("!I", code if code >= 0 else 128 - code))
            with contextlib.suppress(KeyError, ValueError):  # unregistered already when the caller went away
                self.selector.unregister(conn)
            conn.close()

    def _caller_gone(self, pid: int) -> None:
        """The client ended before its command: end the command and what it started in its group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGHUP)

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "reap":
                    self._reap()
                else:
                    try:
                        gone = not key.fileobj.recv(1, socket.MSG_PEEK)  # type: ignore[union-attr]
                    except OSError:
                        gone = True
                    if gone:
                        self.selector.unregister(key.fileobj)
                        self._caller_gone(key.data)


if __name__ == "__main__":
    gc.freeze()  # what is loaded now stays out of the collector's reach: fewer pages copied after each fork
    Daemon(sys.argv[1] if len(sys.argv) > 1 else SOCKET).serve()
