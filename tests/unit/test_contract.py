"""The fake hosts of the fast tests held to FreeBSD's transcripts in ../shared/reference/freebsd-carp.md.

A fake answers a transcript's command as the reference shows, or refuses it as unknown (exit 127: it knows only
the shapes carpweb sends). The commands carpweb's carp layer builds must be answered, never refused. The lab's
hosts meet the same transcripts in tests/lab/test_contract.py, all of them.
"""

from __future__ import annotations

import pytest

from tests import reference
from tests.fakes import FakeWorld
from wizard.carp import cluster, facts

TRANSCRIPTS = reference.transcripts()


def product_commands() -> set[str]:
    """The commands of the transcripts in the shape carpweb's carp layer builds them."""
    return {
        facts.KldLoaded().command(), "kldload -n carp", facts.SysctlInt(facts.PREEMPT).command(),
        facts.SysrcValue("carp_load", reference.RC_FILE).command(), f"sysrc -f {reference.RC_FILE} carp_load=YES",
        facts.Ifconfig("em9").command(), f"sysctl {facts.PREEMPT}=1", str(cluster.set_demotion_command(0, 240)),
    }


def answer(command: str, setup: tuple[str, ...]) -> facts.CommandResult:
    host = FakeWorld().add("server-1", "192.0.2.11")
    for step in setup:
        assert host.answer(step, "").code == 0, step
    return host.answer(command, "")


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=[t.title for t in TRANSCRIPTS])
def test_the_fake_answers_as_freebsd_or_says_it_does_not_know(t):
    res = answer(t.command, t.setup)
    if res.code == 127 and "fake host: unknown command" in res.stderr:
        assert t.command not in product_commands(), f"carpweb sends {t.command!r}: the fake must answer it"
        return
    assert t.matches(res.code, res.stdout, res.stderr), (t, res)


def test_carpweb_sends_these_commands_and_the_reference_shows_them():
    assert product_commands() <= {t.command for t in TRANSCRIPTS}


def test_facts_against_the_reference_transcripts():
    """The carp layer's parsers on the outputs the reference shows (what the fake and the lab print too)."""
    by = {t.title: t for t in TRANSCRIPTS}
    ref = reference.Reference(reference.find().read_text())
    unset = ref.literal("prints the value; unset: stderr", 1)
    assert facts.SysrcValue("NAME", reference.RC_FILE).parse(facts.CommandResult(1, "", unset + "\n")) is None
    unknown = ref.literal("carp not loaded: stderr", 0)
    assert facts.SysctlInt(facts.PREEMPT).parse(facts.CommandResult(1, "", unknown + "\n")) is None
    alone = ref.literal("prints the value alone", 1)
    assert facts.SysctlInt(facts.PREEMPT).parse(facts.CommandResult(0, alone + "\n", "")) == int(alone)
    assert facts.KldLoaded().parse(facts.CommandResult(by["kldstat -q -m carp, loaded"].exit or 0, "", ""))
    assert not facts.KldLoaded().parse(facts.CommandResult(by["kldstat -q -m carp, not loaded"].exit or 0, "", ""))
    release = ref.literal("`uname -r` the running kernel", 4)  # 13.2-RELEASE-p4
    assert facts.Uname().parse(facts.CommandResult(0, f"FreeBSD\n{release}\n", "")) == ("FreeBSD", release)
    assert facts.parse_freebsd_major(release) == 13
    change = ref.literal("prints `NAME: BEFORE -> AFTER`", 2)
    assert facts.parse_sysrc_change(change) == ("", change.rsplit("-> ", 1)[1])
    demoted = ref.literal("on the master `sysctl net.inet.carp.demotion=240`", 1, "on the master").replace(
        "...", facts.DEMOTION)
    assert facts.parse_sysctl_change(demoted) == ("0", "240")
    gateway = ref.literal("`route -n get default`", 1)  # gateway: 192.0.2.1
    assert facts.DefaultGateway().parse(facts.CommandResult(0, f"   route to: default\n    {gateway}\n", "")) \
        == gateway.split()[-1]
    missing = ref.literal("Errors (exit 1): `ifconfig: interface em9", 0)
    assert facts.Ifconfig("em9").parse(facts.CommandResult(1, "", missing + "\n")) == {}
