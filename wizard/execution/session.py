"""A server's connection for the length of a run: the CARP password on stdin, every command recorded."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from ..carp.facts import CommandResult, Fact, batch_command, batch_results
from ..carp.service_ip import PASS_REF
from .connect import Transport

T = TypeVar("T")
Transcript = list[str]  # the commands a step sent, in order (secrets never appear: see PASS_REF)


class Session:
    def __init__(self, name: str, transport: Transport, carp_pass: str = "") -> None:
        self.name, self.transport, self.carp_pass = name, transport, carp_pass

    def with_password(self, carp_pass: str) -> Session:
        """The same connection, sending another service IP's password as $CARP_PASS."""
        return Session(self.name, self.transport, carp_pass)

    def run(self, command: str, transcript: Transcript, *, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult:
        """Send one command, after noting it in the step's transcript. A command that refers to $CARP_PASS
        reads it from stdin on the server, so the password is in no command line, transcript or log."""
        transcript.append(command)
        if PASS_REF in command:
            return self.transport.run("IFS= read -r CARP_PASS; " + command, stdin=self.carp_pass + "\n",
                                      timeout=timeout, on_line=on_line)
        return self.transport.run(command, timeout=timeout, on_line=on_line)

    def read(self, fact: Fact[T], transcript: Transcript) -> T:
        return fact.parse(self.run(fact.command(), transcript))

    def read_all(self, facts: list[Fact[Any]], transcript: Transcript,
                 on_line: Callable[[str], None] | None = None) -> tuple[list[Any], list[CommandResult]]:
        """Read several facts in one round trip (carp.facts.batch_command); the transcript lists each read."""
        commands = [fact.command() for fact in facts]
        if len(commands) < 2 or any(PASS_REF in c for c in commands):
            results = [self.run(c, transcript, on_line=on_line) for c in commands]
        else:
            transcript.extend(commands)
            boundary = secrets.token_hex(8)

            def framed(line: str) -> None:  # live output shows the reads' lines, not the frames
                if on_line is not None and line and not line.startswith(boundary):
                    on_line(line)

            batch = self.transport.run(batch_command(commands, boundary), on_line=framed)
            results = batch_results(batch, boundary, len(commands))
        return [fact.parse(r) for fact, r in zip(facts, results, strict=True)], results

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        """The run was stopped: a pooled connection is not handed to another run but closed, which ends a
        command still waiting on the server (a transport without `abort` is simply closed)."""
        abort = getattr(self.transport, "abort", None)
        (abort or self.transport.close)()
