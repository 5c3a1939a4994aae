"""The seam between execution and the SSH transport: endpoints from servers, and the connector type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from django.conf import settings

from .. import crypto
from ..carp.facts import CommandResult
from ..models import Server
from ..ssh import Connection, Endpoint


class Transport(Protocol):
    """What execution needs of a connection (wizard.ssh.Connection; tests pass a fake)."""

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult: ...

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float) -> None: ...

    def close(self) -> None: ...


Connector = Callable[[Server], Transport]


def endpoint_for(server: Server) -> Endpoint:
    return Endpoint(server.name, server.ssh_host, server.ssh_port, server.ssh_user, server.auth,
                    crypto.decrypt(server.secret_enc), server.privilege, server.host_key)


def ssh_connect(server: Server) -> Transport:
    """Open the real SSH connection (pinned host key, timeouts from settings); raises wizard.ssh.SSHError."""
    return Connection(endpoint_for(server), settings.CARPWEB_SSH_CONNECT_TIMEOUT,
                      settings.CARPWEB_SSH_COMMAND_TIMEOUT)
