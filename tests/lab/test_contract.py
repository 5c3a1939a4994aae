"""The lab's hosts held to FreeBSD's transcripts in ../shared/reference/freebsd-carp.md, over real SSH: every
transcript, answered exactly (the fast tests' fakes meet the same ones in tests/unit/test_contract.py)."""

from __future__ import annotations

import pytest

from lab.pytest_plugin import Shell
from tests import reference

pytestmark = pytest.mark.lab
TRANSCRIPTS = reference.transcripts()


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=[t.title for t in TRANSCRIPTS])
def test_the_lab_answers_as_freebsd(t, lab):
    lab.reset_host("server-1")
    shell = Shell(lab, "server-1")
    try:
        for step in t.setup:
            assert shell.run(step)[0] == 0, step
        code, out, err = shell.run(t.command)
    finally:
        shell.close()
    assert t.matches(code, out, err), (t, code, out, err)
