"""FreeBSD's transcripts as ../shared/reference/freebsd-carp.md gives them, read from that file (never copied here).

Each `Transcript` is a command the reference shows with what it prints and its exit status, plus the state it
is shown in (carp loaded or not, a vhid configured). `find()` locates the reference; the contract tests hold the
fake hosts (tests/fakes.py) and the lab's hosts (lab/freebsd) to these transcripts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = "freebsd-carp.md"
LOADED = ("kldload -n carp",)
WITH_VHID = (*LOADED, "ifconfig em0 inet vhid 1 advskew 0 pass refpass1 alias 192.0.2.100/32")
RC_FILE = "/tmp/carpweb-contract.conf"  # the file the sysrc transcripts edit (FILE in the reference)


def find() -> Path:
    """The reference: CARPWEB_REFERENCE, else shared/reference/ beside the checkout (as CI has it) or above it."""
    if os.environ.get("CARPWEB_REFERENCE"):
        return Path(os.environ["CARPWEB_REFERENCE"])
    for parent in ROOT.parents:
        candidate = parent / "shared" / "reference" / NAME
        if candidate.exists():
            return candidate
    message = f"../shared/reference/{NAME} is not beside the checkout ({ROOT}); set CARPWEB_REFERENCE"
    if os.environ.get("CARPWEB_REQUIRE_LAB") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Transcript:
    """`command` run after `setup`: stdout and stderr match `stdout`/`stderr` (regular expressions over the whole
    stream, trailing newline aside), and the exit status is `exit` (None: any non-zero, as the reference says)."""

    title: str
    command: str
    stdout: str
    stderr: str
    exit: int | None
    setup: tuple[str, ...] = ()

    def matches(self, code: int, out: str, err: str) -> bool:
        code_ok = code != 0 if self.exit is None else code == self.exit
        return code_ok and bool(re.fullmatch(self.stdout, out.rstrip("\n"))) and bool(
            re.fullmatch(self.stderr, err.rstrip("\n")))


class Reference:
    def __init__(self, text: str) -> None:
        self.text = text

    def bullet(self, anchor: str) -> str:
        """The list item (with its continuation lines and code block) that holds `anchor`."""
        at = self.text.index(anchor)
        start = self.text.rfind("\n- ", 0, at) + 1
        end = self.text.find("\n- ", at)
        section = self.text.find("\n#", at)
        ends = [e for e in (end, section) if e >= 0]
        return self.text[start:min(ends) if ends else len(self.text)]

    def literal(self, anchor: str, nth: int = 0, after: str = "") -> str:
        """The nth `quoted` text after `after` in the bullet holding `anchor`."""
        item = self.bullet(anchor)
        tail = item[item.index(after) + len(after):] if after else item
        return re.findall(r"`([^`]+)`", tail)[nth]

    def block(self, anchor: str) -> str:
        """The fenced block of the bullet holding `anchor`, its indentation removed."""
        body = self.bullet(anchor).split("```")[1]
        lines = [ln.strip() for ln in body.strip("\n").splitlines()]
        return "\n".join(ln for ln in lines if ln)

    def exit_after(self, anchor: str, after: str) -> int:
        item = self.bullet(anchor)
        return int(re.search(r"exit (\d+)", item[item.index(after):]).group(1))  # type: ignore[union-attr]


def exactly(text: str, *placeholders: tuple[str, str]) -> str:
    """A regular expression for `text` as printed, where each placeholder (NNN, N) stands for a number."""
    pattern = re.escape(text)
    for word, replacement in placeholders:
        pattern = pattern.replace(re.escape(word), replacement)
    return pattern


def columns(text: str, *placeholders: tuple[str, str]) -> str:
    """As `exactly`, with runs of blanks matching any run (the reference's column layout is not byte-exact)."""
    return "\n".join(r"[ \t]*" + r"[ \t]+".join(exactly(part, *placeholders) for part in line.split()) + r"[ \t]*"
                     for line in text.splitlines())


NUMBER = r"\d+"


def transcripts(path: Path | None = None) -> list[Transcript]:  # noqa: PLR0915 - one list, read in order
    ref = Reference((path or find()).read_text())
    out: list[Transcript] = []

    def add(title: str, command: str, *, stdout: str = "", stderr: str = "", exit: int | None = 0,
            setup: tuple[str, ...] = ()) -> None:
        out.append(Transcript(title, command, stdout, stderr, exit, setup))

    # Loading the module
    a = "Idempotent way: `kldload -n carp`"
    add("kldload -n carp, loaded: silent", ref.literal(a, 0, "Idempotent way:"), setup=LOADED)
    a = "a second time: stderr"
    add("kldload carp a second time", ref.literal(a, 0), stderr=exactly(ref.literal(a, 1)),
        exit=ref.exit_after(a, "stderr"), setup=LOADED)
    a = "prints `Loaded carp, id=N`"
    add("kldload -v carp", ref.literal(a, 0), stdout=exactly(ref.literal(a, 1), ("N", NUMBER)))
    add("kldload -nv carp, loaded", ref.literal(a, 2), stdout=exactly(ref.literal(a, 3)), setup=LOADED)
    a = "Usage error:"
    add("kldload without a file", "kldload", stderr=exactly(ref.literal(a, 0)), exit=ref.exit_after(a, "Usage"))
    # Checking the module
    a = "no output; exit 0 if loaded"
    add("kldstat -q -m carp, loaded", ref.literal(a, 0), setup=LOADED)
    add("kldstat -q -m carp, not loaded", ref.literal(a, 0), exit=1)
    a = "when loaded, exit 0:"
    add("kldstat -m carp, loaded", ref.literal(a, 0), stdout=columns(ref.block(a), ("NNN", NUMBER)), setup=LOADED)
    a = "When not loaded: stderr `kldstat"
    add("kldstat -m carp, not loaded", ref.literal(a, 0), stderr=exactly(ref.literal(a, 0, "When not loaded")),
        exit=ref.exit_after(a, "When not loaded"))
    a = "with a vhid still configured"
    add("kldunload carp with a vhid", ref.literal(a, 0), stderr=exactly(ref.literal(a, 1)),
        exit=ref.exit_after(a, "still configured"), setup=WITH_VHID)
    add("kldunload carp, not loaded", ref.literal(a, 0), stderr=exactly(ref.literal(a, 0, "Not loaded")),
        exit=ref.exit_after(a, "Not loaded"))
    # sysrc, on a file of its own
    a = "prints `NAME: BEFORE -> AFTER`"
    new = ref.literal(a, 2)  # carp_load:  -> YES
    name, value = new.split(":")[0], new.rsplit("-> ", 1)[1]
    assign = ref.literal(a, 0).replace("FILE", RC_FILE).replace("NAME", name).replace("VALUE", value)
    add("sysrc -f FILE NAME=VALUE, unset before", assign, stdout=exactly(new), setup=(f"rm -f {RC_FILE}",))
    a = "prints the value; unset: stderr"
    show = ref.literal(a, 0).replace("FILE", RC_FILE)
    add("sysrc -n, set", show.replace("NAME", name), stdout=exactly(value), setup=(f"rm -f {RC_FILE}", assign))
    add("sysrc -n, unset", show.replace("NAME", name), stderr=exactly(ref.literal(a, 1).replace("NAME", name)),
        exit=ref.exit_after(a, "unset:"), setup=(f"rm -f {RC_FILE}",))
    a = "silent; exit 0 when the value matches"
    check = ref.literal(a, 0).replace("FILE", RC_FILE).replace("NAME", name)
    add("sysrc -c, matches", check.replace("VALUE", value), setup=(f"rm -f {RC_FILE}", assign))
    add("sysrc -c, differs", check.replace("VALUE", value + "X"), exit=1, setup=(f"rm -f {RC_FILE}", assign))
    # sysctl
    a = "Read: `net.inet.carp.preempt: 0`"
    shown = ref.literal(a, 0)
    oid = shown.split(":")[0]
    add("sysctl read", f"sysctl {oid}", stdout=exactly(shown), setup=LOADED)
    add("sysctl set", ref.literal(a, 0, "Set:"), stdout=exactly(ref.literal(a, 1, "Set:")), setup=LOADED)
    a = "carp not loaded: stderr"
    add("sysctl, carp not loaded", f"sysctl {oid}", stderr=exactly(ref.literal(a, 0)), exit=None)
    a = "prints the value alone"
    add("sysctl -n", f"sysctl -n {oid}", stdout=exactly("0"), setup=LOADED)
    a = "on the master `sysctl net.inet.carp.demotion=240`"
    add("sysctl demotion", ref.literal(a, 0, "on the master"),
        stdout=exactly(ref.literal(a, 1, "on the master"), ("...", "net.inet.carp.demotion")), setup=LOADED)
    # ifconfig's errors
    a = "Errors (exit 1): `ifconfig: interface em9"
    add("ifconfig em9", "ifconfig em9", stderr=exactly(ref.literal(a, 0)), exit=1)
    add("vhid 0", "ifconfig em0 inet vhid 0 pass x alias 192.0.2.100/32", stderr=exactly(ref.literal(a, 1)),
        exit=1, setup=LOADED)
    add("advskew without a vhid", "ifconfig em0 advskew 100", stderr=exactly(ref.literal(a, 2)), exit=1,
        setup=LOADED)
    # Identifying the host
    a = "`uname -s` prints `FreeBSD`"
    add("uname -s", ref.literal(a, 0), stdout=exactly(ref.literal(a, 1)))
    return out
