"""The one SSH transport: paramiko with pinned host keys, TCP_NODELAY, timeouts, and privilege wrapping.

Nothing else in carpweb imports paramiko. Each failure becomes an SSHError whose message is a sentence
for the admin (what failed, where, what to do next).
"""

from __future__ import annotations

import base64
import hashlib
import io
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import paramiko

from .carp.facts import CommandResult
from .carp.shell import remote_command

KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class SSHError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int
    user: str
    auth: str  # key or password
    secret: str
    privilege: str  # root, sudo or doas
    pinned_key: str  # "type base64", empty when not pinned

    def __repr__(self) -> str:  # never show the secret
        return f"Endpoint({self.name} {self.user}@{self.host}:{self.port})"


MAX_OUTPUT = 8 * 1024 * 1024  # bytes of stdout plus stderr one command may send; past it, carpweb stops reading
MAX_LINE = 64 * 1024  # bytes of one line handed on; the rest of a longer line is dropped


class OutputTooLarge(Exception):
    """A command sent more than its bound of output: a node is hostile, or something on it is very wrong."""


class LineSplitter:
    """Bytes in, whole lines out, each at most MAX_LINE bytes: a line that never ends cannot grow without bound."""

    def __init__(self, on_line: Callable[[str], None], limit: int = MAX_LINE) -> None:
        self.on_line, self.limit = on_line, limit
        self.partial = b""
        self.cut = False  # inside a line already handed on cut short: drop until its end

    def feed(self, data: bytes) -> None:
        *lines, rest = (self.partial + data).split(b"\n")
        for line in lines:
            if not self.cut:
                self.on_line(line[:self.limit].decode(errors="replace"))
            self.cut = False
        if len(rest) > self.limit:
            if not self.cut:
                self.on_line(rest[:self.limit].decode(errors="replace") + " [line cut]")
            self.cut, rest = True, b""
        self.partial = rest

    def close(self) -> None:
        if self.partial and not self.cut:
            self.on_line(self.partial.decode(errors="replace"))
        self.partial = b""


def _drain(chan: paramiko.Channel, deadline: float, on_line: Callable[[str], None] | None,
           idle: float | None = None, keep: bool = True, limit: int = MAX_OUTPUT) -> tuple[bytes, bytes]:
    """Read stdout and stderr until the command exits and its output ends, or raise TimeoutError at `deadline`
    (with `idle`, the deadline moves on whenever output comes: a silent command times out, a talking one not).
    Kept output is bounded: past `limit` bytes in all, OutputTooLarge (a follow() keeps nothing, so only its
    lines are bounded)."""
    out, err = bytearray(), bytearray()
    lines = LineSplitter(on_line) if on_line is not None else None
    while True:
        if chan.recv_ready():
            data = chan.recv(65536)
            if idle is not None:
                deadline = time.monotonic() + idle
            if keep:
                out += data
            if lines is not None:
                lines.feed(data)
        elif chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            if keep:
                err += data
        elif chan.exit_status_ready() and chan.eof_received:
            break
        elif chan.closed:  # closed under us (the connection broke, or a stopped run closed it)
            raise EOFError("the channel was closed")
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            # The channel's descriptor turns readable when data or the exit status arrives (paramiko's pipe).
            select.select([chan], [], [], min(remaining, 1.0))
        if len(out) + len(err) > limit:
            raise OutputTooLarge
    if lines is not None:
        lines.close()
    return bytes(out), bytes(err)


def fingerprint(key_type: str, key_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _socket(host: str, port: int, timeout: float, name: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise SSHError("unreachable", f"{name}: no answer from {host}:{port} within {timeout:g} s. Check the "
                       "address, the port and any firewall between carpweb and the server.") from None
    except OSError as e:
        raise SSHError("unreachable", f"{name}: cannot reach {host}:{port} ({e.strerror or e}). Check that the "
                       "server is up and sshd listens on that port.") from None
    # paramiko does not set it; without it every request/response waits for delayed ACKs (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def fetch_host_key(name: str, host: str, port: int, timeout: float = 10) -> tuple[str, str, str]:
    """First contact: the server's host key (type, base64, SHA256 fingerprint), without authenticating."""
    sock = _socket(host, port, timeout, name)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise SSHError("unreachable", f"{name}: {host}:{port} did not complete an SSH handshake within "
                       f"{timeout:g} s ({e or type(e).__name__}). Is sshd running and answering?") from None
    finally:
        transport.close()
    b64 = key.get_base64()
    return key.get_name(), b64, fingerprint(key.get_name(), b64)


def load_private_key(text: str, name: str = "server") -> paramiko.PKey:
    for cls in KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise SSHError("auth", f"{name}: the private key is protected by a passphrase; "
                           "paste an unencrypted key dedicated to carpweb.") from None
        except (paramiko.SSHException, ValueError, IndexError):
            continue
    raise SSHError("auth", f"{name}: the private key is not a valid OpenSSH, PEM RSA, ECDSA or Ed25519 key.")


def exec_request(name: str, command: str, privilege: str) -> str:
    """The exec request for a command, or SSHError when it cannot be sent as it is (a line break: csh could not
    read it, so nothing is sent)."""
    try:
        return remote_command(command, privilege)
    except ValueError as e:
        raise SSHError("command", f"{name}: {e}; nothing was sent. A value with a line break reached a "
                       "command: correct it in the cluster's settings.") from None


class Connection:
    """One SSH connection to one server for the length of a run."""

    def __init__(self, ep: Endpoint, connect_timeout: float = 10, command_timeout: float = 30) -> None:
        self.ep = ep
        self.command_timeout = command_timeout
        if ep.auth == "password" and "PRIVATE KEY-----" in ep.secret:
            raise SSHError("auth", f"{ep.name}: the stored credential is a private key, but the server is set to "
                           "password authentication; carpweb never sends a key as a password. Enter the password "
                           "(or choose Private key).")
        if not ep.pinned_key:
            raise SSHError("hostkey", f"{ep.name}: its host key is not pinned yet. Confirm the fingerprint on the "
                           "Review page (or `manage.py pin_host_keys`) before any command runs.")
        key_type, key_b64 = ep.pinned_key.split()[:2]
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        lookup = ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"
        self.client.get_host_keys().add(lookup, key_type, paramiko.PKey.from_type_string(key_type,
                                                                                         base64.b64decode(key_b64)))
        kwargs: dict[str, object] = {"password": ep.secret} if ep.auth == "password" else {
            "pkey": load_private_key(ep.secret, ep.name)}
        sock = _socket(ep.host, ep.port, connect_timeout, ep.name)
        try:
            self.client.connect(ep.host, port=ep.port, username=ep.user, sock=sock, timeout=connect_timeout,
                                banner_timeout=connect_timeout, auth_timeout=connect_timeout,
                                look_for_keys=False, allow_agent=False, **kwargs)  # type: ignore[arg-type]
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise SSHError("hostkey", f"{ep.name}: HOST KEY MISMATCH. {ep.host}:{ep.port} presented "
                           f"{fingerprint(e.key.get_name(), e.key.get_base64())}, but "
                           f"{fingerprint(key_type, key_b64)} is pinned. This is either a man-in-the-middle "
                           "or a reinstalled server. Nothing was run. Verify the key on the server's console; "
                           "only an admin can re-pin it.") from None
        except paramiko.AuthenticationException:
            sock.close()
            raise SSHError("auth", f"{ep.name}: {ep.user}@{ep.host}:{ep.port} refused the "
                           f"{'password' if ep.auth == 'password' else 'key'}. Check the user and the credential "
                           "(authorized_keys or the password).") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            sock.close()
            raise SSHError("unreachable", f"{ep.name}: {ep.host}:{ep.port} accepted the connection but did not "
                           f"complete an SSH handshake within {connect_timeout:g} s ({e or type(e).__name__}). "
                           "sshd may be hung or overloaded: check it on the server's console.") from None
        self.ep = replace(ep, secret="")  # a warm connection keeps no credential in memory

    def _session(self, name: str, timeout: float) -> paramiko.Channel:
        """A new session channel; SSHError kind "stale" when the connection turns out dead (nothing was sent:
        a pooled connection is replaced and the command sent on the new one)."""
        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise EOFError("the connection is closed")
            return transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SSHError("stale", f"{name}: the SSH connection broke ({e or type(e).__name__}). Run again when "
                           "the server is reachable; every step is safe to repeat.") from None

    def is_open(self) -> bool:
        """Whether the connection still stands as far as this side knows (no round trip): a server that closed
        it, or rebooted, is seen at once; a silent one needs `alive`."""
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def alive(self, timeout: float) -> bool:
        """A keepalive: the server still answers on this connection (a session channel opened and closed)."""
        try:
            self._session(self.ep.name, timeout).close()
        except SSHError:
            return False
        return True

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None, name: str | None = None) -> CommandResult:
        """Run one command; `on_line` gets each stdout line as it arrives. The whole command, output included,
        must end within `timeout` (default: the connection's command timeout). It runs as root under sh,
        whatever the login shell (csh on FreeBSD < 14): `sh -c`, behind sudo -n or doas -n (never a prompt)
        unless the login is root's (exec_request). `name` is the server's name in
        messages (a pooled connection may serve servers of several clusters)."""
        name = name or self.ep.name
        limit = timeout or self.command_timeout
        started = time.monotonic()
        request = exec_request(name, command, self.ep.privilege)
        chan = self._session(name, limit)
        try:
            try:
                chan.exec_command(request)
                if stdin is not None:
                    chan.sendall(stdin.encode())
                chan.shutdown_write()
                out, err = _drain(chan, started + limit, on_line)
                code = chan.recv_exit_status()
            finally:
                chan.close()
        except TimeoutError:
            raise SSHError("timeout", f"{name}: a command did not finish within {limit:g} s. The server "
                           "may be overloaded or the network lossy; run again, or raise "
                           "CARPWEB_SSH_COMMAND_TIMEOUT.") from None
        except OutputTooLarge:
            raise SSHError("output", f"{name}: a command sent more than {MAX_OUTPUT // 2**20} MiB of "
                           "output, where carpweb's reads print a few KB; carpweb stopped reading it. Check what "
                           "runs on the server (a replaced command, a login script that prints).") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SSHError("unreachable", f"{name}: the SSH connection broke ({e or type(e).__name__}). "
                           "Run again when the server is reachable; every step is safe to repeat.") from None
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"),
                             time.monotonic() - started)

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float,
               name: str | None = None) -> None:
        """Run a command that does not end (it follows a log) and hand each line to `on_line`; raise SSHError
        when no output came for `idle_timeout` seconds (the command prints heartbeats) or the link breaks."""
        name = name or self.ep.name
        request = exec_request(name, command, self.ep.privilege)
        chan = self._session(name, self.command_timeout)
        try:
            try:
                chan.exec_command(request)
                chan.shutdown_write()
                _drain(chan, time.monotonic() + idle_timeout, on_line, idle=idle_timeout, keep=False)
            finally:
                chan.close()
        except TimeoutError:
            raise SSHError("timeout", f"{name}: nothing heard for {idle_timeout:g} s; the link or the "
                           "server is down.") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SSHError("unreachable", f"{name}: the SSH connection broke ({e or type(e).__name__}).") \
                from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
