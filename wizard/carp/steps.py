"""The steps of preflight, prepare and verify: which commands read the facts, and what they mean.

A check step reads facts and says ok or failed. An operation step reads facts and returns the commands
of a change only when one is needed (otherwise "already done"), like pyinfra's operations.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from . import facts

LOADER_CONF = "/boot/loader.conf"


@dataclass(frozen=True)
class Target:
    """One server of a cluster, as the steps need it; built by the runner from validated models."""

    server: str
    address: str
    subnet: str
    gateway: str
    vip: str
    vhid: int
    interface: str
    stamp: str = "00000000T000000"  # the run's start, for backup file names


@dataclass(frozen=True)
class CommandResult:
    code: int
    stdout: str
    stderr: str


@dataclass
class Outcome:
    status: str  # ok, changed, failed
    message: str


@dataclass
class Change:
    """An operation's decision: run these commands, then judge with `confirm`."""

    commands: list[str]
    message: str
    confirm: Callable[[list[CommandResult]], Outcome] | None = None


@dataclass(frozen=True)
class Step:
    name: str
    phase: str
    title: str
    reads: Callable[[Target], list[str]]
    judge: Callable[[Target, list[CommandResult]], Outcome | Change]
    changes: Callable[[Target], list[str]] = field(default=lambda t: [])


q = shlex.quote


def _fail(msg: str) -> Outcome:
    return Outcome("failed", msg)


def _ok(msg: str) -> Outcome:
    return Outcome("ok", msg)


# -- preflight ----------------------------------------------------------------------------------
def _judge_os(t: Target, r: list[CommandResult]) -> Outcome:
    system, release = facts.parse_uname(r[0].stdout)
    if system != "FreeBSD":
        return _fail(f"{t.server} runs {system or 'an unknown system'}, not FreeBSD: carpweb configures "
                     "FreeBSD's CARP only. Check the SSH endpoint points at the right machine.")
    major = facts.parse_freebsd_major(release)
    if major is not None and major < 10:
        return _fail(f"{t.server} runs FreeBSD {release}; CARP on interface aliases needs FreeBSD 10 or later.")
    return _ok(f"FreeBSD {release}")


def _judge_privilege(t: Target, r: list[CommandResult]) -> Outcome:
    res = r[0]
    if res.code == 0 and res.stdout.strip() == "0":
        return _ok("commands run as root without a prompt")
    err = res.stderr.strip()
    if "password" in err.lower():
        return _fail(f"On {t.server}, the privilege command asks for a password ({err}). Allow it without a "
                     "password for this user (NOPASSWD in sudoers, nopass in doas.conf), or connect as root.")
    return _fail(f"On {t.server}, commands do not run as root (uid {res.stdout.strip() or '?'}; {err or 'no error'})."
                 " Choose the privilege method this user has: root, sudo -n or doas -n.")


def _judge_interface(t: Target, r: list[CommandResult]) -> Outcome:
    names, shown = r[0].stdout.split(), r[1]
    if t.interface not in names or shown.code != 0:
        return _fail(f"Interface {t.interface} does not exist on {t.server}; it has: {' '.join(names) or 'none'}."
                     " Pick the interface that carries the server's address.")
    iface = facts.parse_ifconfig(shown.stdout).get(t.interface)
    own = [a for a in (iface.inet if iface else []) if a.vhid is None]
    match = [a for a in own if a.address == t.address]
    if not match:
        found = ", ".join(f"{a.address}/{a.prefix}" for a in own) or "no IPv4 address"
        return _fail(f"{t.interface} on {t.server} does not carry {t.address} (it has {found}). "
                     "Correct the server's address or the interface.")
    net = ipaddress.IPv4Network(t.subnet)
    on_host = ipaddress.IPv4Interface(f"{match[0].address}/{match[0].prefix}").network
    if on_host != net:
        return _fail(f"On {t.server}, {t.address} sits in {on_host}, not in the cluster's subnet {net}. "
                     "Correct the subnet, or the address's netmask on the server.")
    return _ok(f"{t.interface} carries {t.address}/{match[0].prefix}")


def _judge_gateway(t: Target, r: list[CommandResult]) -> Outcome:
    gw = facts.parse_route_gateway(r[0].stdout)
    if gw != t.gateway:
        return _fail(f"The default route of {t.server} is {gw or 'missing'}, not {t.gateway}. "
                     "Correct the gateway here, or defaultrouter in the server's /etc/rc.conf.")
    if not facts.parse_ping_ok(r[1].code):
        return _fail(f"The gateway {t.gateway} does not answer ping from {t.server}. Check the cabling and the "
                     "router before relying on a failover through it.")
    return _ok(f"default route via {t.gateway}, which answers")


def _own_vip(t: Target, text: str) -> bool:
    iface = facts.parse_ifconfig(text).get(t.interface)
    return bool(iface and any(a.address == t.vip and a.vhid == t.vhid for a in iface.inet))


def _judge_vip_free(t: Target, r: list[CommandResult]) -> Outcome:
    if _own_vip(t, r[0].stdout):
        return _ok(f"{t.vip} is already this cluster's CARP address (vhid {t.vhid})")
    if facts.parse_ping_ok(r[1].code):
        return _fail(f"{t.vip} already answers ping from {t.server}: another host uses it. "
                     "Choose a free address for the service IP.")
    return _ok(f"{t.vip} is free")


def _judge_vhid_free(t: Target, r: list[CommandResult]) -> Outcome:
    iface_map = facts.parse_ifconfig(r[0].stdout)
    for iface in iface_map.values():
        for a in iface.inet:
            if a.vhid == t.vhid and a.address != t.vip:
                return _fail(f"vhid {t.vhid} is already configured on {t.server} for {a.address}: choose "
                             "another vhid (1-255), unique on this network segment.")
    return _ok(f"vhid {t.vhid} is not used for another address")


# -- prepare ------------------------------------------------------------------------------------
def _confirm_sysrc(results: list[CommandResult]) -> Outcome:
    last = results[-1]
    if last.code != 0:
        return _fail(f"sysrc failed: {last.stderr.strip() or last.stdout.strip()}")
    change = facts.parse_sysrc_change(last.stdout)
    return Outcome("changed", f'{LOADER_CONF}: carp_load "{change[0] if change else ""}" -> "YES"')


def _judge_loader(t: Target, r: list[CommandResult]) -> Outcome | Change:
    if facts.parse_sysrc_value(r[0].code, r[0].stdout) == "YES":
        return _ok(f'{LOADER_CONF} already has carp_load="YES"')
    return Change(_loader_changes(t), "add carp_load=\"YES\" to /boot/loader.conf", _confirm_sysrc)


def _loader_changes(t: Target) -> list[str]:
    backup = f"{LOADER_CONF}.carpweb-{t.stamp}"
    # Keep the previous file once, before the first change; sysrc itself writes through a temp file.
    return [f"if [ -f {q(LOADER_CONF)} ] && [ ! -e {q(backup)} ]; then cp -p {q(LOADER_CONF)} {q(backup)}; fi",
            f"sysrc -f {q(LOADER_CONF)} carp_load=YES"]


def _confirm_kldload(results: list[CommandResult]) -> Outcome:
    res = results[-1]
    if res.code != 0:
        return _fail(f"kldload carp failed: {facts.parse_kldload_error(res.stderr)}")
    return Outcome("changed", "carp module loaded")


def _judge_kldload(t: Target, r: list[CommandResult]) -> Outcome | Change:
    if facts.parse_kldstat_loaded(r[0].code):
        return _ok("carp is already loaded")
    return Change(["kldload -n carp"], "load the carp module now", _confirm_kldload)


# -- verify -------------------------------------------------------------------------------------
def _judge_loaded(t: Target, r: list[CommandResult]) -> Outcome:
    if facts.parse_kldstat_loaded(r[0].code):
        return _ok("kldstat -q -m carp: loaded")
    return _fail(f"carp is not loaded on {t.server}. Run Prepare again.")


def _judge_persisted(t: Target, r: list[CommandResult]) -> Outcome:
    value = facts.parse_sysrc_value(r[0].code, r[0].stdout)
    if value == "YES":
        return _ok('carp_load="YES" in /boot/loader.conf')
    return _fail(f"/boot/loader.conf on {t.server} has carp_load={value!r}: carp would be missing after a reboot."
                 " Run Prepare again.")


def _judge_allow(t: Target, r: list[CommandResult]) -> Outcome:
    value = facts.parse_sysctl_int(r[0].code, r[0].stdout)
    if value == 1:
        return _ok("net.inet.carp.allow is 1")
    return _fail(f"net.inet.carp.allow is {value} on {t.server}: CARP packets are ignored. "
                 "Set it to 1 (sysctl net.inet.carp.allow=1 and in /etc/sysctl.conf).")


STEPS: list[Step] = [
    Step("privilege", "preflight", "Root privilege without a prompt", lambda t: ["id -u"], _judge_privilege),
    Step("freebsd", "preflight", "FreeBSD and its version", lambda t: ["uname -s; uname -r"], _judge_os),
    Step("interface", "preflight", "Interface carries the server's address",
         lambda t: ["ifconfig -l", f"ifconfig {q(t.interface)}"], _judge_interface),
    Step("gateway", "preflight", "Default route and gateway",
         lambda t: ["route -n get default", f"ping -c 1 -t 2 {q(t.gateway)}"], _judge_gateway),
    Step("vip-free", "preflight", "Service IP not used by another host",
         lambda t: [f"ifconfig {q(t.interface)}", f"ping -c 1 -t 1 {q(t.vip)}"], _judge_vip_free),
    Step("vhid-free", "preflight", "vhid free on this server", lambda t: ["ifconfig"], _judge_vhid_free),
    Step("loader-conf", "prepare", "Load carp at boot (/boot/loader.conf)",
         lambda t: [f"sysrc -f {q(LOADER_CONF)} -n carp_load"], _judge_loader, _loader_changes),
    Step("kldload", "prepare", "Load carp now", lambda t: ["kldstat -q -m carp"], _judge_kldload,
         lambda t: ["kldload -n carp"]),
    Step("module-loaded", "verify", "carp module loaded", lambda t: ["kldstat -q -m carp"], _judge_loaded),
    Step("loader-persisted", "verify", "carp_load persisted", lambda t: [f"sysrc -f {q(LOADER_CONF)} -n carp_load"],
         _judge_persisted),
    Step("carp-allow", "verify", "CARP packets accepted", lambda t: ["sysctl -n net.inet.carp.allow"], _judge_allow),
]
PHASES = ("preflight", "prepare", "verify")
KINDS = {"preflight": ("preflight",), "prepare": ("prepare",), "verify": ("verify",),
         "setup": ("preflight", "prepare", "verify")}


def steps_for(kind: str) -> list[Step]:
    phases = KINDS[kind]
    return [s for s in STEPS if s.phase in phases]
