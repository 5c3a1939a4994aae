"""The seam between execution and the SSH transport: endpoints from servers, and the connector type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from django.conf import settings

from .. import crypto, sshpool
from ..carp.facts import CommandResult
from ..models import Server
from ..ssh import Connection, Endpoint


class Transport(Protocol):
    """What execution needs of a connection (wizard.ssh.Connection, a pooled sshpool.Lease; tests pass a fake)."""

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult: ...

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float) -> None: ...

    def close(self) -> None: ...


Connector = Callable[[Server], Transport]


def endpoint_for(server: Server) -> Endpoint:
    return Endpoint(server.name, server.ssh_host, server.ssh_port, server.ssh_user, server.auth,
                    crypto.decrypt(server.secret_enc), server.privilege, server.host_key)


def open_connection(ep: Endpoint) -> Connection:
    return Connection(ep, settings.CARPWEB_SSH_CONNECT_TIMEOUT, settings.CARPWEB_SSH_COMMAND_TIMEOUT)


def ssh_connect(server: Server) -> Transport:
    """A new SSH connection of its own (pinned host key, timeouts from settings), closed by its user: for the
    collector's long follows and one-off reads. Raises wizard.ssh.SSHError."""
    return open_connection(endpoint_for(server))


def ssh_lease(server: Server) -> Transport:
    """A run's connection: a warm one from this process's pool when one was opened with the same endpoint,
    credential and pin (wizard.sshpool), else a new one kept for later runs. Raises wizard.ssh.SSHError."""
    return sshpool.shared(open_connection).lease(endpoint_for(server))
