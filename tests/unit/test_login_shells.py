"""Every command carpweb sends reaches `sh -c` unchanged, whether the login shell is sh or csh (tcsh, root's shell
on FreeBSD up to 13.x): the exec request is parsed by real tcsh and dash here and must hand sh the very text."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.unit import test_command_safety as safety
from wizard.carp import transition_log
from wizard.carp.facts import batch_command
from wizard.carp.shell import printf_text, quote_for_any_shell, remote_command

TCSH = shutil.which("tcsh")
if TCSH is None and os.environ.get("CARPWEB_REQUIRE_LAB") == "1":
    pytest.fail("tcsh is missing (scripts/bootstrap installs it)", pytrace=False)
pytestmark = pytest.mark.skipif(TCSH is None, reason="Debian's tcsh is not installed")


def _as_parsed_by(shell: list[str], command: str, privilege: str = "root") -> str:
    """What `sh -c` would receive: the exec request with its `sh` swapped for a printf of its argument."""
    request = remote_command(command, privilege)
    prefix = {"root": "", "sudo": "sudo -n ", "doas": "doas -n "}[privilege]
    assert request.startswith(prefix + "sh -c ")
    probe = "printf %s " + request[len(prefix + "sh -c "):]
    res = subprocess.run([*shell, probe], capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode == 0, (shell, res.stderr)
    return res.stdout


@pytest.fixture
def cluster():
    return safety.make_cluster()  # the command-safety suite's cluster


@pytest.mark.django_db
def test_every_command_reaches_sh_unchanged_under_csh_and_sh(cluster):
    corpus = [c for c, _ in safety._commands(cluster, "em0", "192.0.2.100")]
    corpus += [transition_log.write_file(path, text, mode) for path, (text, mode) in transition_log.FILES.items()]
    corpus += [transition_log.follow_command("ab12", 7),
               batch_command(["ifconfig em0", "sysctl net.inet.carp"], "f" * 16),
               "echo 'it''s' \"$HOME\" `id` $(id) a!b !! \\! {a,b} * ~root"]
    assert len(corpus) > 60
    for command in corpus:
        for shell in ([str(TCSH), "-f", "-c"], ["/bin/sh", "-c"]):
            for privilege in ("root", "sudo"):
                assert _as_parsed_by(shell, command, privilege) == command, (shell, command)


def test_a_whole_file_is_written_exactly_by_printf():
    text = transition_log.SCRIPT_TEXT + "\\ back\\slash \\n not a newline, 100% %s\n\tend\n"
    res = subprocess.run(["/bin/sh", "-c", f"printf {printf_text(text)}"], capture_output=True, text=True,
                         timeout=10, check=True)
    assert res.stdout == text


def test_a_line_break_cannot_be_quoted_for_csh():
    with pytest.raises(ValueError, match="one line"):
        quote_for_any_shell("a\nb")
