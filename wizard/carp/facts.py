"""Facts: a command to read something from a FreeBSD host, and a parser of its output.

Outputs follow shared/reference/freebsd-carp.md; parsers accept the variants it lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CARP_LINE = re.compile(r"^\s*carp:\s+(INIT|BACKUP|MASTER)\s+vhid\s+(\d+)\s+advbase\s+(\d+)\s+advskew\s+(\d+)")
INET_LINE = re.compile(r"^\s*inet\s+(\d+\.\d+\.\d+\.\d+)\s+netmask\s+(0x[0-9a-fA-F]{8})(?:.*?\svhid\s+(\d+))?")
IFACE_HEAD = re.compile(r"^([A-Za-z0-9_.]+):\s+flags=")


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


@dataclass
class Interface:
    name: str
    up: bool = False
    inet: list[InetAddress] = field(default_factory=list)
    carp: list[CarpStatus] = field(default_factory=list)
    status: str = ""


def parse_ifconfig(text: str) -> dict[str, Interface]:
    """`ifconfig` or `ifconfig IF`: every interface with its IPv4 addresses and CARP status lines."""
    interfaces: dict[str, Interface] = {}
    current: Interface | None = None
    for line in text.splitlines():
        head = IFACE_HEAD.match(line)
        if head:
            current = Interface(head.group(1), up="<UP" in line)
            interfaces[current.name] = current
            continue
        if current is None:
            continue
        if m := INET_LINE.match(line):
            prefix = bin(int(m.group(2), 16)).count("1")
            current.inet.append(InetAddress(m.group(1), prefix, int(m.group(3)) if m.group(3) else None))
        elif m := CARP_LINE.match(line):
            current.carp.append(CarpStatus(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
        elif line.strip().startswith("status:"):
            current.status = line.split(":", 1)[1].strip()
    return interfaces


def parse_route_gateway(text: str) -> str | None:
    """`route -n get default`: the gateway line, or None when there is no default route."""
    m = re.search(r"^\s*gateway:\s+(\S+)", text, re.M)
    return m.group(1) if m else None


def parse_uname(text: str) -> tuple[str, str]:
    """`uname -s; uname -r` on two lines -> (system, release)."""
    lines = text.split()
    return (lines[0] if lines else "", lines[1] if len(lines) > 1 else "")


def parse_freebsd_major(release: str) -> int | None:
    m = re.match(r"^(\d+)\.\d+-", release)
    return int(m.group(1)) if m else None


def parse_sysrc_value(code: int, text: str) -> str | None:
    """`sysrc -f FILE -n NAME`: the value, or None when the variable is unset (exit 1)."""
    return text.strip() if code == 0 else None


def parse_sysctl_int(code: int, text: str) -> int | None:
    """`sysctl -n NAME`: the integer, or None for an unknown oid (carp not loaded)."""
    if code != 0:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_sysctl_change(text: str) -> tuple[str, str] | None:
    """`sysctl NAME=VALUE` prints `NAME: BEFORE -> AFTER`."""
    m = re.match(r"^\S+:\s+(\S*)\s+->\s+(\S*)\s*$", text.strip())
    return (m.group(1), m.group(2)) if m else None


def parse_sysrc_change(text: str) -> tuple[str, str] | None:
    """`sysrc NAME=VALUE` prints `NAME: BEFORE -> AFTER` (BEFORE empty when unset)."""
    m = re.match(r"^[A-Za-z_][A-Za-z0-9_]*:\s(.*?)\s->\s(.*)$", text.strip())
    return (m.group(1).strip(), m.group(2)) if m else None


def parse_ping_ok(code: int) -> bool:
    """FreeBSD ping exits 0 when a reply came, 2 when none did."""
    return code == 0


def parse_kldstat_loaded(code: int) -> bool:
    """`kldstat -q -m carp`: exit 0 loaded (or compiled in), 1 not."""
    return code == 0


def parse_kldload_error(stderr: str) -> str:
    return stderr.strip().removeprefix("kldload: ")
