"""The node steps of preflight, prepare and verify: which facts they read, and what those facts mean.

A check step reads facts and says ok or failed. An operation step reads facts and returns the commands
of a change only when one is needed (otherwise "already done"), like pyinfra's operations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import facts
from .facts import CommandResult, Fact, q

LOADER_CONF = "/boot/loader.conf"


class Phase(StrEnum):
    PREFLIGHT = "preflight"
    PREPARE = "prepare"
    VERIFY = "verify"
    CONFIGURE = "configure"
    REMOVE = "remove"


# Phases whose steps change things: an "ok" there means there was nothing to change ("already done").
OPERATION_PHASES = frozenset({Phase.PREPARE, Phase.CONFIGURE, Phase.REMOVE})


class Verdict(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Target:
    """One server of a cluster, as the steps need it; built from validated models."""

    server: str
    address: str
    subnet: str
    gateway: str
    vip: str
    vhid: int
    interface: str
    stamp: str = "00000000T000000"  # the run's start, for backup file names
    advskew: int = 0
    advbase: int = 1
    vip_prefix: int = 32
    reapply: bool = False  # the last check found the cluster unhealthy: re-apply what ifconfig cannot show


@dataclass
class Outcome:
    status: Verdict
    message: str


@dataclass
class Change:
    """An operation's decision: run these commands, then judge with `confirm` (default: all exit 0)."""

    commands: list[str]
    message: str
    confirm: Callable[[list[CommandResult]], Outcome] | None = None


Judge = Callable[[Target, list[Any], list[CommandResult]], Outcome | Change]


@dataclass(frozen=True)
class Step:
    name: str
    phase: Phase
    title: str
    reads: Callable[[Target], list[Fact[Any]]]
    judge: Judge
    changes: Callable[[Target], list[str]] = field(default=lambda t: [])  # what Review shows as the change

    def read_commands(self, t: Target) -> list[str]:
        return [fact.command() for fact in self.reads(t)]


def ok(msg: str) -> Outcome:
    return Outcome(Verdict.OK, msg)


def failed(msg: str) -> Outcome:
    return Outcome(Verdict.FAILED, msg)


def backup_first(path: str, stamp: str) -> str:
    """Keep the previous file once, before the first change of a run (`*.carpweb-<stamp>`)."""
    backup = f"{path}.carpweb-{stamp}"
    return f"if [ -f {q(path)} ] && [ ! -e {q(backup)} ]; then cp -p {q(path)} {q(backup)}; fi"


# -- preflight ----------------------------------------------------------------------------------
def _judge_privilege(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    if v[0] == 0:
        return ok("commands run as root without a prompt")
    err = r[0].stderr.strip()
    if "password" in err.lower():
        return failed(f"On {t.server}, the privilege command asks for a password ({err}). Allow it without a "
                      "password for this user (NOPASSWD in sudoers, nopass in doas.conf), or connect as root.")
    return failed(f"On {t.server}, commands do not run as root (uid {r[0].stdout.strip() or '?'}; "
                  f"{err or 'no error'}). Choose the privilege method this user has: root, sudo -n or doas -n.")


def _judge_os(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    system, release = v[0]
    if system != "FreeBSD":
        return failed(f"{t.server} runs {system or 'an unknown system'}, not FreeBSD: carpweb configures "
                      "FreeBSD's CARP only. Check the SSH endpoint points at the right machine.")
    major = facts.parse_freebsd_major(release)
    if major is not None and major < 10:
        return failed(f"{t.server} runs FreeBSD {release}; CARP on interface aliases needs FreeBSD 10 or later.")
    return ok(f"FreeBSD {release}")


def _judge_interface(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    names, shown = v[0], v[1].get(t.interface)
    if t.interface not in names or shown is None:
        return failed(f"Interface {t.interface} does not exist on {t.server}; it has: {' '.join(names) or 'none'}."
                      " Pick the interface that carries the server's address.")
    own = shown.own_addresses()
    match = [a for a in own if a.address == t.address]
    if not match:
        found = ", ".join(f"{a.address}/{a.prefix}" for a in own) or "no IPv4 address"
        return failed(f"{t.interface} on {t.server} does not carry {t.address} (it has {found}). "
                      "Correct the server's address or the interface.")
    net = ipaddress.IPv4Network(t.subnet)
    on_host = ipaddress.IPv4Interface(f"{match[0].address}/{match[0].prefix}").network
    if on_host != net:
        return failed(f"On {t.server}, {t.address} sits in {on_host}, not in the cluster's subnet {net}. "
                      "Correct the subnet, or the address's netmask on the server.")
    return ok(f"{t.interface} carries {t.address}/{match[0].prefix}")


def _judge_gateway(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    gateway, answers = v
    if gateway != t.gateway:
        return failed(f"The default route of {t.server} is {gateway or 'missing'}, not {t.gateway}. "
                      "Correct the gateway here, or defaultrouter in the server's /etc/rc.conf.")
    if not answers:
        return failed(f"The gateway {t.gateway} does not answer ping from {t.server}. Check the cabling and the "
                      "router before relying on a failover through it.")
    return ok(f"default route via {t.gateway}, which answers")


def _judge_vip_free(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    interfaces, answers = v
    iface = interfaces.get(t.interface)
    if iface is not None and iface.has_carp_address(t.vip, t.vhid):
        return ok(f"{t.vip} is already this cluster's CARP address (vhid {t.vhid})")
    if answers:
        return failed(f"{t.vip} already answers ping from {t.server}: another host uses it. "
                      "Choose a free address for the service IP.")
    return ok(f"{t.vip} is free")


def _judge_vhid_free(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    for iface in v[0].values():
        for a in iface.inet:
            if a.vhid == t.vhid and a.address != t.vip:
                return failed(f"vhid {t.vhid} is already configured on {t.server} for {a.address}: choose "
                              "another vhid (1-255), unique on this network segment.")
    return ok(f"vhid {t.vhid} is not used for another address")


# -- prepare ------------------------------------------------------------------------------------
def _confirm_sysrc(results: list[CommandResult]) -> Outcome:
    last = results[-1]
    if not last.ok:
        return failed(f"sysrc failed: {last.error()}")
    change = facts.parse_sysrc_change(last.stdout)
    return Outcome(Verdict.CHANGED, f'{LOADER_CONF}: carp_load "{change[0] if change else ""}" -> "YES"')


def _loader_changes(t: Target) -> list[str]:
    # sysrc itself writes through a temp file and a rename.
    return [backup_first(LOADER_CONF, t.stamp), f"sysrc -f {q(LOADER_CONF)} carp_load=YES"]


def _judge_loader(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    if v[0] == "YES":
        return ok(f'{LOADER_CONF} already has carp_load="YES"')
    return Change(_loader_changes(t), 'add carp_load="YES" to /boot/loader.conf', _confirm_sysrc)


def _confirm_kldload(results: list[CommandResult]) -> Outcome:
    res = results[-1]
    if not res.ok:
        return failed(f"kldload carp failed: {facts.parse_kldload_error(res.stderr)}")
    return Outcome(Verdict.CHANGED, "carp module loaded")


def _judge_kldload(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    if v[0]:
        return ok("carp is already loaded")
    return Change(["kldload -n carp"], "load the carp module now", _confirm_kldload)


# -- verify -------------------------------------------------------------------------------------
def _judge_loaded(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    if v[0]:
        return ok("kldstat -q -m carp: loaded")
    return failed(f"carp is not loaded on {t.server}. Run Prepare again.")


def _judge_persisted(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    if v[0] == "YES":
        return ok('carp_load="YES" in /boot/loader.conf')
    return failed(f"/boot/loader.conf on {t.server} has carp_load={v[0]!r}: carp would be missing after a reboot."
                  " Run Prepare again.")


def _judge_allow(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    if v[0] == 1:
        return ok("net.inet.carp.allow is 1")
    return failed(f"net.inet.carp.allow is {v[0]} on {t.server}: CARP packets are ignored. "
                  "Set it to 1 (sysctl net.inet.carp.allow=1 and in /etc/sysctl.conf).")


LOADER_VALUE = facts.SysrcValue("carp_load", LOADER_CONF)
PREFLIGHT: list[Step] = [
    Step("privilege", Phase.PREFLIGHT, "Root privilege without a prompt", lambda t: [facts.UserId()],
         _judge_privilege),
    Step("freebsd", Phase.PREFLIGHT, "FreeBSD and its version", lambda t: [facts.Uname()], _judge_os),
    Step("interface", Phase.PREFLIGHT, "Interface carries the server's address",
         lambda t: [facts.InterfaceNames(), facts.Ifconfig(t.interface)], _judge_interface),
    Step("gateway", Phase.PREFLIGHT, "Default route and gateway",
         lambda t: [facts.DefaultGateway(), facts.Ping(t.gateway, 2)], _judge_gateway),
    Step("vip-free", Phase.PREFLIGHT, "Service IP not used by another host",
         lambda t: [facts.Ifconfig(t.interface), facts.Ping(t.vip, 1)], _judge_vip_free),
    Step("vhid-free", Phase.PREFLIGHT, "vhid free on this server", lambda t: [facts.Ifconfig()], _judge_vhid_free),
]
PREPARE: list[Step] = [
    Step("loader-conf", Phase.PREPARE, "Load carp at boot (/boot/loader.conf)", lambda t: [LOADER_VALUE],
         _judge_loader, _loader_changes),
    Step("kldload", Phase.PREPARE, "Load carp now", lambda t: [facts.KldLoaded()], _judge_kldload,
         lambda t: ["kldload -n carp"]),
]
VERIFY: list[Step] = [
    Step("module-loaded", Phase.VERIFY, "carp module loaded", lambda t: [facts.KldLoaded()], _judge_loaded),
    Step("loader-persisted", Phase.VERIFY, "carp_load persisted", lambda t: [LOADER_VALUE], _judge_persisted),
    Step("carp-allow", Phase.VERIFY, "CARP packets accepted", lambda t: [facts.SysctlInt(facts.ALLOW)],
         _judge_allow),
]
