"""Several reads in one SSH round trip: the batch script runs in a real POSIX shell here (dash, as FreeBSD's sh
would run it), and each command's result must be exactly what the command gives when run alone."""

from __future__ import annotations

import subprocess

import pytest

from tests.fakes import batch_output, batch_parts
from wizard.carp.facts import CommandResult, batch_command, batch_results
from wizard.execution.session import Session

BOUNDARY = "0f1e2d3c4b5a6978"
TRICKY = [
    "printf 'no trailing newline'",
    "printf 'a;b\\n\\nc\\n'",  # an empty line inside the output
    "echo out; echo err >&2; false",  # both streams and a failure
    "cat /nonexistent/file",  # exit 1 with an error
    "true",  # nothing at all
    "printf '%s\\n' 'looks like a frame 0 end 0'",
    "uname -s; uname -r",  # two commands, one read (the Uname fact)
    "read line; echo \"stdin gave [$line]\"",  # reads get no stdin: the batch's own script is not theirs
]


def sh(command: str, stdin: str = "") -> CommandResult:
    done = subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, text=True, timeout=10)
    return CommandResult(done.returncode, done.stdout, done.stderr)


def test_each_read_in_a_batch_gets_exactly_its_own_result():
    batch = sh(batch_command(TRICKY, BOUNDARY))
    got = batch_results(batch, BOUNDARY, len(TRICKY))
    alone = [sh(c + " </dev/null") for c in TRICKY]
    assert [(r.code, r.stdout, r.stderr) for r in got] == [(r.code, r.stdout, r.stderr) for r in alone]
    assert got[2].code == 1 and got[2].stdout == "out\n" and got[2].stderr == "err\n"
    assert got[7].stdout == "stdin gave []\n"


def test_a_batch_cut_short_fails_the_reads_it_never_ran():
    commands = ["echo first", "echo second; exit 3", "echo never"]
    got = batch_results(sh(batch_command(commands, BOUNDARY)), BOUNDARY, 3)
    assert (got[0].code, got[0].stdout) == (0, "first\n")
    assert got[1].code == got[2].code == 3 and got[2].stdout == ""
    assert "ended early" in got[2].stderr


def test_a_boundary_is_hex_and_never_needs_quoting():
    for bad in ("", "short", "0f1e2d3c4b5a6978'; reboot", "0F1E2D3C4B5A6978"):
        with pytest.raises(ValueError):
            batch_command(["true"], bad)


def test_test_hosts_can_split_a_batch_and_answer_it_as_the_shell_would():
    assert batch_parts(batch_command(TRICKY, BOUNDARY)) == (BOUNDARY, TRICKY)
    assert batch_parts("ifconfig em0") is None
    results = [CommandResult(0, "a\n", ""), CommandResult(2, "", "no\n"), CommandResult(0, "", "")]
    assert batch_results(batch_output(BOUNDARY, results), BOUNDARY, 3) == results


class ShellTransport:
    """Runs commands in this machine's /bin/sh: enough to show what a session sends and gets back."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def run(self, command, stdin=None, timeout=None, on_line=None):  # type: ignore[no-untyped-def]
        self.sent.append(command)
        result = sh(command, stdin or "")
        if on_line is not None:
            for line in result.stdout.splitlines():
                on_line(line)
        return result


class Echo:
    def __init__(self, text: str) -> None:
        self.text = text

    def command(self) -> str:
        return f"echo {self.text}"

    def parse(self, result: CommandResult) -> str:
        return result.stdout.strip()


def test_a_session_reads_several_facts_in_one_round_trip_and_lists_each_in_the_transcript():
    transport = ShellTransport()
    session = Session("server-1", transport, "carp-secret")  # type: ignore[arg-type]
    transcript: list[str] = []
    lines: list[str] = []
    values, results = session.read_all([Echo("one"), Echo("two"), Echo("three")], transcript, on_line=lines.append)
    assert values == ["one", "two", "three"] and [r.code for r in results] == [0, 0, 0]
    assert len(transport.sent) == 1  # one exec for three reads
    assert transcript == ["echo one", "echo two", "echo three"]
    assert lines == ["one", "two", "three"]  # live output without the frames
