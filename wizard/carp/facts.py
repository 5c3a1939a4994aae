"""Facts: each is the command that reads one thing from a FreeBSD host, plus the parser of its output.

The command lives with its fact, once, with every value quoted (pyinfra's shape). Outputs follow
shared/reference/freebsd-carp.md; parsers accept the variants it lists. Pure: no I/O here.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

q = shlex.quote
T_co = TypeVar("T_co", covariant=True)

CARP_LINE = re.compile(r"^\s*carp:\s+(INIT|BACKUP|MASTER)\s+vhid\s+(\d+)\s+advbase\s+(\d+)\s+advskew\s+(\d+)")
INET_LINE = re.compile(r"^\s*inet\s+(\d+\.\d+\.\d+\.\d+)\s+netmask\s+(0x[0-9a-fA-F]{8})(?:.*?\svhid\s+(\d+))?")
INET6_LINE = re.compile(r"^\s*inet6\s+([0-9a-fA-F:.]+)(%\S+)?\s+prefixlen\s+(\d+)(?:.*?\svhid\s+(\d+))?")
PEER_LINE = re.compile(r"^\s*peer\s+(\S+)\s+peer6\s+(\S+)")
IFACE_HEAD = re.compile(r"^([A-Za-z0-9_.]+):\s+flags=")
DEMOTION = "net.inet.carp.demotion"
PREEMPT = "net.inet.carp.preempt"
ALLOW = "net.inet.carp.allow"


@dataclass(frozen=True)
class CommandResult:
    """What one command returned: the only result type (the SSH transport returns it too)."""

    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == 0

    def error(self) -> str:
        return self.stderr.strip() or self.stdout.strip()


class Fact(Protocol[T_co]):
    def command(self) -> str: ...

    def parse(self, result: CommandResult) -> T_co: ...


# -- ifconfig ----------------------------------------------------------------------------------
@dataclass
class InetAddress:
    address: str
    prefix: int
    vhid: int | None = None


@dataclass
class CarpStatus:
    state: str
    vhid: int
    advbase: int
    advskew: int
    peer: str | None = None  # 14.x's second line: 224.0.0.18 (multicast) or the unicast peer; None before 14
    peer6: str | None = None


@dataclass
class Interface:
    name: str
    up: bool = False
    inet: list[InetAddress] = field(default_factory=list)
    carp: list[CarpStatus] = field(default_factory=list)
    status: str = ""
    inet6: list[InetAddress] = field(default_factory=list)
    ifdisabled: bool = False  # nd6 options carry IFDISABLED: IPv6 is off on the interface

    def carp_status(self, vhid: int) -> CarpStatus | None:
        return next((c for c in self.carp if c.vhid == vhid), None)

    def has_carp_address(self, address: str, vhid: int) -> bool:
        return any(same_address(a.address, address) and a.vhid == vhid for a in self.inet + self.inet6)

    def carp_addresses(self, vhid: int) -> list[InetAddress]:
        """Every address (IPv4 and IPv6) the vhid carries on this interface."""
        return [a for a in self.inet + self.inet6 if a.vhid == vhid]

    def own_addresses(self) -> list[InetAddress]:
        """The interface's own addresses (not CARP ones)."""
        return [a for a in self.inet if a.vhid is None]

    def own_addresses6(self) -> list[InetAddress]:
        """The interface's own global IPv6 addresses (not CARP ones, not link-local)."""
        return [a for a in self.inet6 if a.vhid is None and not a.address.lower().startswith("fe80:")]


def same_address(a: str, b: str) -> bool:
    """Two spellings of one address (IPv6 has many: 2001:db8::1 and 2001:0db8:0::1)."""
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def parse_ifconfig(text: str) -> dict[str, Interface]:
    """`ifconfig` or `ifconfig IF`: every interface with its IPv4 addresses and CARP status lines."""
    interfaces: dict[str, Interface] = {}
    current: Interface | None = None
    for line in text.splitlines():
        head = IFACE_HEAD.match(line)
        if head:
            current = Interface(head.group(1), up="<UP" in line)
            interfaces[current.name] = current
        elif current is not None:
            _parse_interface_line(current, line)
    return interfaces


def _parse_interface_line(current: Interface, line: str) -> None:
    if m := INET_LINE.match(line):
        prefix = bin(int(m.group(2), 16)).count("1")
        current.inet.append(InetAddress(m.group(1), prefix, int(m.group(3)) if m.group(3) else None))
    elif m := INET6_LINE.match(line):
        current.inet6.append(InetAddress(m.group(1), int(m.group(3)), int(m.group(4)) if m.group(4) else None))
    elif m := CARP_LINE.match(line):
        current.carp.append(CarpStatus(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
    elif (m := PEER_LINE.match(line)) and current.carp:
        current.carp[-1].peer, current.carp[-1].peer6 = m.group(1), m.group(2)
    elif line.strip().startswith("nd6 options="):
        current.ifdisabled = "IFDISABLED" in line
    elif line.strip().startswith("status:"):
        current.status = line.split(":", 1)[1].strip()


@dataclass(frozen=True)
class Ifconfig:
    """`ifconfig [IF]`: interfaces by name (empty when the command failed)."""

    interface: str = ""

    def command(self) -> str:
        return f"ifconfig {q(self.interface)}" if self.interface else "ifconfig"

    def parse(self, result: CommandResult) -> dict[str, Interface]:
        return parse_ifconfig(result.stdout) if result.ok else {}


@dataclass(frozen=True)
class InterfaceNames:
    """`ifconfig -l`: every interface's name."""

    def command(self) -> str:
        return "ifconfig -l"

    def parse(self, result: CommandResult) -> list[str]:
        return result.stdout.split()


# -- identity and privilege -----------------------------------------------------------------------
@dataclass(frozen=True)
class UserId:
    """`id -u`: the uid commands run as (0 means root), None when the privilege command refused."""

    def command(self) -> str:
        return "id -u"

    def parse(self, result: CommandResult) -> int | None:
        text = result.stdout.strip()
        return int(text) if result.ok and text.isdigit() else None


@dataclass(frozen=True)
class Uname:
    """`uname -s; uname -r` -> (system, release)."""

    def command(self) -> str:
        return "uname -s; uname -r"

    def parse(self, result: CommandResult) -> tuple[str, str]:
        words = result.stdout.split()
        return (words[0] if words else "", words[1] if len(words) > 1 else "")


def parse_freebsd_major(release: str) -> int | None:
    m = re.match(r"^(\d+)\.\d+-", release)
    return int(m.group(1)) if m else None


# -- network --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DefaultGateway:
    """`route -n get default`: the gateway line, or None when there is no default route."""

    def command(self) -> str:
        return "route -n get default"

    def parse(self, result: CommandResult) -> str | None:
        m = re.search(r"^\s*gateway:\s+(\S+)", result.stdout, re.M)
        return m.group(1) if m else None


@dataclass(frozen=True)
class Ping:
    """FreeBSD's `ping -c 1 -t SECONDS HOST`: True when a reply came (exit 0; 2 when none did)."""

    host: str
    wait: int = 2

    def command(self) -> str:
        if ":" in self.host:  # ping6 -X: the whole run's timeout in seconds (13.x's ping6, a link on 14.x)
            return f"ping6 -c 1 -X {int(self.wait)} {q(self.host)}"
        return f"ping -c 1 -t {int(self.wait)} {q(self.host)}"

    def parse(self, result: CommandResult) -> bool:
        return result.ok


CARP_AD = re.compile(r"^IP6?\s+([0-9a-fA-F:.]+)\s+>\s+\S+:\s+CARPv\d-advertise\s+\d+:\s+vhid=(\d+)\s+"
                     r"advbase=(\d+)\s+advskew=(\d+)")


@dataclass(frozen=True)
class Advertisement:
    source: str
    vhid: int
    advbase: int
    advskew: int


@dataclass(frozen=True)
class CarpHeard:
    """Listen to the segment for CARP (and VRRP: the same protocol 112) advertisements, as the reference's
    pitfall 1 says to: `timeout S tcpdump -nlt -i IF -c N -T carp 'ip proto 112 or ip6 proto 112'`. Lines look
    like `IP 192.0.2.11 > 224.0.0.18: CARPv2-advertise 36: vhid=1 advbase=1 advskew=0 authlen=7 counter=...`;
    IPv6 ones come from the sender's link-local address. None when tcpdump could not listen (exit other than
    0, or timeout's 124)."""

    interface: str
    seconds: int = 3
    limit: int = 50

    def command(self) -> str:
        return (f"timeout {int(self.seconds)} tcpdump -nlt -i {q(self.interface)} -c {int(self.limit)} -T carp "
                "'ip proto 112 or ip6 proto 112'")

    def parse(self, result: CommandResult) -> list[Advertisement] | None:
        if result.code not in (0, 124):
            return None
        return [Advertisement(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))
                for m in map(CARP_AD.match, result.stdout.splitlines()[:self.limit]) if m]


# -- kernel module, sysctl, files -------------------------------------------------------------------
@dataclass(frozen=True)
class KldLoaded:
    """`kldstat -q -m MODULE`: exit 0 loaded (or compiled in), 1 not. FreeBSD's own tests check it so."""

    module: str = "carp"

    def command(self) -> str:
        return f"kldstat -q -m {q(self.module)}"

    def parse(self, result: CommandResult) -> bool:
        return result.ok


@dataclass(frozen=True)
class SysctlInt:
    """`sysctl -n NAME`: the integer, or None for an unknown oid (carp not loaded)."""

    name: str

    def command(self) -> str:
        return f"sysctl -n {q(self.name)}"

    def parse(self, result: CommandResult) -> int | None:
        try:
            return int(result.stdout.strip()) if result.ok else None
        except ValueError:
            return None


@dataclass(frozen=True)
class SysctlTree:
    """`sysctl NODE`: every variable of the node, one `name: value` line each, as {name: int value}; empty for an
    unknown oid (carp not loaded). One command where Check needs several of net.inet.carp's values."""

    node: str

    def command(self) -> str:
        return f"sysctl {q(self.node)}"

    def parse(self, result: CommandResult) -> dict[str, int]:
        values: dict[str, int] = {}
        for line in result.stdout.splitlines() if result.ok else []:
            name, sep, value = line.partition(":")
            if sep and value.strip().lstrip("-").isdigit():
                values[name.strip()] = int(value.strip())
        return values


@dataclass(frozen=True)
class SysrcValue:
    """`sysrc -f FILE -n NAME`: the value, or None when the variable is unset (exit 1)."""

    name: str
    file: str = "/etc/rc.conf"

    def command(self) -> str:
        return f"sysrc -f {q(self.file)} -n {q(self.name)}"

    def parse(self, result: CommandResult) -> str | None:
        return result.stdout.strip() if result.ok else None


@dataclass(frozen=True)
class FileText:
    """`cat PATH`: the file's text, empty when it is missing. Private: a configuration file may hold secrets that
    are not carpweb's (other vhids' passwords), so a step keeps what it judged from it, never the text."""

    path: str
    private = True

    def command(self) -> str:
        return f"cat {q(self.path)}"

    def parse(self, result: CommandResult) -> str:
        return result.stdout if result.ok else ""


# -- outputs of changes ------------------------------------------------------------------------------
def parse_sysctl_change(text: str) -> tuple[str, str] | None:
    """`sysctl NAME=VALUE` prints `NAME: BEFORE -> AFTER`."""
    m = re.match(r"^\S+:\s+(\S*)\s+->\s+(\S*)\s*$", text.strip())
    return (m.group(1), m.group(2)) if m else None


def parse_sysrc_change(text: str) -> tuple[str, str] | None:
    """`sysrc NAME=VALUE` prints `NAME: BEFORE -> AFTER` (BEFORE empty when unset)."""
    m = re.match(r"^[A-Za-z_][A-Za-z0-9_]*:\s(.*?)\s->\s(.*)$", text.strip())
    return (m.group(1).strip(), m.group(2)) if m else None


def parse_kldload_error(stderr: str) -> str:
    return stderr.strip().removeprefix("kldload: ")


def is_private(fact: object) -> bool:
    """Whether a fact's output may hold secrets and must be kept out of transcripts and live output."""
    return bool(getattr(fact, "private", False))


def private_summary(fact: object, result: CommandResult) -> CommandResult:
    """What a transcript keeps of a private read: its exit status and size, not the text."""
    what = getattr(fact, "path", "the output")
    return CommandResult(result.code, f"({len(result.stdout.encode())} bytes of {what} read; not kept: the step "
                         "keeps what it judged)\n", result.stderr[-500:], result.seconds)


# `pass VALUE` in rc.conf lines and ifconfig commands, `key "VALUE"` in root's `ifconfig -k`: masked in any output.
# `"$CARP_PASS"`, the shell variable carpweb's own commands use, is no secret and stays readable.
SECRET_WORDS = re.compile(r"""(?P<word>(?<![\w-])pass\s+|(?<![\w-])key\s+(?="))"""
                          r"""(?P<value>"(?:[^"\\\n]|\\.)*"?|'[^'\n]*'?|[^\s"']+)""")
PASS_VARIABLE = ('"$CARP_PASS"', "$CARP_PASS")


def mask_secret_words(text: str, mask: str = "********") -> str:
    """Every `pass VALUE` and `key "VALUE"` with the value masked, whoever's password it is."""
    return SECRET_WORDS.sub(lambda m: m.group(0) if m.group("value") in PASS_VARIABLE else m.group("word") + mask,
                            text)


def read_all(facts: list[Fact[Any]], results: list[CommandResult]) -> list[Any]:
    """Each fact's value from its result, in order."""
    return [fact.parse(result) for fact, result in zip(facts, results, strict=True)]


# -- several reads in one command -------------------------------------------------------------------
BOUNDARY = re.compile(r"^[0-9a-f]{16,64}$")


def batch_command(commands: list[str], boundary: str) -> str:
    """Several reads in one exec, one SSH round trip instead of one each. Each command runs in turn with no
    stdin, its stdout and stderr framed by `boundary` lines (stdout's closing line carries its exit status),
    so every result comes back whole and apart, on one line (carp.shell: csh cannot quote a newline). The boundary
    is random per batch (hex, so it needs no quoting); no output of these reads contains it but by a 1 in 2**64
    chance."""
    if not BOUNDARY.match(boundary):
        raise ValueError("a batch boundary is 16 to 64 lowercase hex digits")
    return "; ".join(
        f"printf '%s\\n' '{boundary} {i}'; printf '%s\\n' '{boundary} {i}' >&2; {{ {command} ; }} </dev/null; "
        f"c=$?; printf '\\n%s %s\\n' '{boundary} {i} end' \"$c\"; printf '\\n%s\\n' '{boundary} {i} end' >&2"
        for i, command in enumerate(commands))


def _frames(text: str, boundary: str, count: int, with_code: bool) -> list[tuple[str, int | None] | None]:
    frames: list[tuple[str, int | None] | None] = []
    pos = 0
    for i in range(count):
        start = text.find(f"{boundary} {i}\n", pos)
        end = re.compile(rf"\n{boundary} {i} end(?: (\d+))?\n").search(text, start + 1) if start >= 0 else None
        if start < 0 or end is None:
            frames.append(None)
            continue
        body = text[start + len(f"{boundary} {i}\n"):end.start()]
        frames.append((body, int(end.group(1)) if with_code and end.group(1) else None))
        pos = end.end()
    return frames


def batch_results(result: CommandResult, boundary: str, count: int) -> list[CommandResult]:
    """Each command's result from the output of `batch_command`. A command whose frame is missing (the batch
    was cut short) failed with what the whole batch said."""
    outs = _frames(result.stdout, boundary, count, with_code=True)
    errs = _frames(result.stderr, boundary, count, with_code=False)
    results = []
    for out, err in zip(outs, errs, strict=True):
        if out is None or out[1] is None:
            results.append(CommandResult(result.code or 1, "", f"the reads ended early (exit {result.code})"))
        else:
            results.append(CommandResult(out[1], out[0], err[0] if err else ""))
    if results:
        results[-1] = CommandResult(results[-1].code, results[-1].stdout, results[-1].stderr, result.seconds)
    return results
