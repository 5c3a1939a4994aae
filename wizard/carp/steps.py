"""The node steps of preflight, prepare and verify: which facts they read, and what those facts mean.

A check step reads facts and says ok or failed. An operation step reads facts and returns the commands
of a change only when one is needed (otherwise "already done"), like pyinfra's operations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    WARNING = "warning"  # a check that found a risk to know of, not a reason to stop


MULTICAST = "224.0.0.18"
MULTICAST6 = "ff02::12"


@dataclass(frozen=True)
class Vip:
    """One service IP as the steps need it: a vhid on an interface with its addresses ("ADDR/PREFIX")."""

    interface: str
    vhid: int
    addresses: tuple[str, ...]
    advbase: int = 1
    peer: str = ""  # unicast: the other node's IPv4 address on the interface ("" multicast)
    peer6: str = ""  # unicast: its IPv6 address
    key: str = ""  # which CARP password the session sends as $CARP_PASS (carpweb's id of the service IP)
    existing: bool = False  # configured on the nodes already: the ones that run it advertise it

    @property
    def unicast(self) -> bool:
        return bool(self.peer or self.peer6)

    @property
    def hosts(self) -> list[str]:
        return [self.split(a)[0] for a in self.addresses]

    @property
    def label(self) -> str:
        return f"vhid {self.vhid} on {self.interface} ({', '.join(self.hosts)})"

    @staticmethod
    def split(address: str) -> tuple[str, int]:
        host, sep, prefix = address.rpartition("/")
        if not sep or not prefix.isdigit():
            return address, 128 if ":" in address else 32
        return host, int(prefix)


@dataclass(frozen=True)
class Target:
    """One server of a cluster, as the steps need it; built from validated models. Node-wide steps use the
    server's fields; a per-service-IP step gets the same target with `vip` set (`for_vip`)."""

    server: str
    address: str
    subnet: str
    gateway: str
    interface: str  # the node's own interface (its address lives there)
    stamp: str = "00000000T000000"  # the run's start, for backup file names
    advskew: int = 0
    reapply: bool = False  # the last check found the cluster unhealthy: re-apply what ifconfig cannot show
    vips: tuple[Vip, ...] = ()
    vip: Vip | None = None
    address6: str = ""
    cluster_hosts: tuple[str, ...] = ()  # every node's own addresses: advertisements from these are the cluster's

    def for_vip(self, vip: Vip) -> Target:
        return replace(self, vip=vip)

    @property
    def sip(self) -> Vip:
        """The service IP of a per-service-IP step."""
        if self.vip is None:
            raise ValueError("a per-service-IP step needs its service IP")
        return self.vip


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
    per_vip: bool = False  # run once per service IP, with the target's `vip` set

    def row_name(self, vip: Vip | None) -> str:
        return f"{self.name}:{vip.interface}:{vip.vhid}" if self.per_vip and vip else self.name

    def row_title(self, vip: Vip | None) -> str:
        return f"{self.title}: vhid {vip.vhid} on {vip.interface}" if self.per_vip and vip else self.title

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


def _unlisted(t: Target, r: list[CommandResult]) -> Outcome | None:
    """`ifconfig -l` itself failed or printed nothing: say so, not that the interface is missing."""
    if r and (not r[0].ok or not r[0].stdout.strip()):
        said = (r[0].error().splitlines() or ["no output"])[-1][:200]
        return failed(f"`ifconfig -l` on {t.server} listed no interface (exit {r[0].code}: {said}). Run again; if "
                      "it stays so, check the server.")
    return None


def _judge_interface(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    names, shown = v[0], v[1].get(t.interface)
    if t.interface not in names or shown is None:
        return _unlisted(t, r) or failed(f"Interface {t.interface} does not exist on {t.server}; it has: "
                                         f"{' '.join(names) or 'none'}. Pick the interface that carries the "
                                         "server's address.")
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
    vip = t.sip
    iface, answers = v[0].get(vip.interface), v[1:]
    taken = [h for h, answered in zip(vip.hosts, answers, strict=True)
             if answered and not (iface and iface.has_carp_address(h, vip.vhid))]
    if taken and vip.existing:  # configured on the nodes: the master answers for it
        return ok(f"{', '.join(taken)} answer{'s' if len(taken) == 1 else ''}: the service IP is up on another node "
                  "of the cluster")
    if taken:
        return failed(f"{', '.join(taken)} already answer{'s' if len(taken) == 1 else ''} ping from {t.server}: "
                      "another host uses it. Choose a free address for the service IP.")
    ours = [h for h in vip.hosts if iface and iface.has_carp_address(h, vip.vhid)]
    if ours:
        return ok(f"{', '.join(ours)} already this cluster's CARP address (vhid {vip.vhid}); the rest is free")
    return ok(f"{', '.join(vip.hosts)} free")


def _judge_vhid_free(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    vip = t.sip
    iface = v[0].get(vip.interface)
    for a in iface.carp_addresses(vip.vhid) if iface else []:
        if not any(facts.same_address(a.address, h) for h in vip.hosts):
            return failed(f"vhid {vip.vhid} is already configured on {t.server}'s {vip.interface} for {a.address}: "
                          "choose another vhid (1-255), unique on this network segment, or add the address to "
                          "that service IP.")
    return ok(f"vhid {vip.vhid} is not used on {vip.interface} for another address")


def _judge_vip_interface(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    """The service IP's interface exists; IPv6 is on there and a node address shares each IPv6 prefix; unicast
    needs FreeBSD 14 (ifconfig's `peer`) and a peer that answers."""
    vip = t.sip
    names, shown, (_, release) = v[0], v[1].get(vip.interface), v[2]
    if vip.interface not in names or shown is None:
        return _unlisted(t, r) or failed(f"Interface {vip.interface} does not exist on {t.server}; it has: "
                                         f"{' '.join(names) or 'none'}.")
    notes = []
    v6 = [a for a in vip.addresses if ":" in a]
    if v6 and shown.ifdisabled:
        return failed(f"IPv6 is disabled on {t.server}'s {vip.interface} (nd6 options IFDISABLED), so CARP cannot "
                      f"advertise {', '.join(vip.hosts)}. Fix: `ifconfig {vip.interface} inet6 -ifdisabled` and "
                      f'ifconfig_{vip.interface}_ipv6="inet6 -ifdisabled" in /etc/rc.conf (or an IPv6 address).')
    for a in v6:
        net = ipaddress.IPv6Interface(a).network
        if not any(ipaddress.IPv6Address(o.address) in net for o in shown.own_addresses6()):
            return failed(f"{t.server}'s {vip.interface} has no IPv6 address in {net}, so {a} would not be "
                          "reachable there. Give the node an address in that prefix, or correct the service IP.")
    if vip.unicast:
        major = facts.parse_freebsd_major(release)
        if major is None or major < 14:
            return failed(f"{t.server} runs FreeBSD {release or 'unknown'}: unicast CARP (ifconfig's peer) needs "
                          "14.0 or later. Choose multicast for this service IP, or upgrade.")
        answers = v[3:]
        peers = [p for p in (vip.peer, vip.peer6) if p]
        silent = [p for p, answered in zip(peers, answers, strict=True) if not answered]
        if silent:
            return failed(f"The unicast peer {', '.join(silent)} does not answer ping from {t.server}: "
                          "advertisements would not arrive. Check the peer's address and the path between them.")
        notes.append(f"unicast to {', '.join(peers)}, which answers")
    return ok(f"{vip.interface} is ready" + (f"; {'; '.join(notes)}" if notes else ""))


def _vip_interface_reads(t: Target) -> list[Fact[Any]]:
    vip = t.sip
    peers = [p for p in (vip.peer, vip.peer6) if p] if vip.unicast else []
    return [facts.InterfaceNames(), facts.Ifconfig(vip.interface), facts.Uname(), *(facts.Ping(p, 2) for p in peers)]


LISTEN_MAX_SECONDS = 10


def _multicast_interfaces(t: Target) -> list[tuple[str, int]]:
    """Each interface a multicast service IP lives on, with how long to listen there: two advertisement intervals
    of its slowest vhid and a second (an advertisement leaves every advbase + skew/256 s), at most 10 s."""
    seconds: dict[str, int] = {}
    for vip in t.vips:
        if not vip.unicast:
            seconds[vip.interface] = max(seconds.get(vip.interface, 0), min(2 * vip.advbase + 1, LISTEN_MAX_SECONDS))
    return sorted(seconds.items())


def _heard_reads(t: Target) -> list[Fact[Any]]:
    return [f for name, secs in _multicast_interfaces(t) for f in (facts.Ifconfig(name), facts.CarpHeard(name, secs))]


def _hearing(t: Target, vip: Vip, shown: facts.Interface | None, ads: list[facts.Advertisement]) -> tuple[str, str]:
    """("failed"|"warning"|"ok", why) for one multicast service IP on a node, from what the node heard."""
    if shown and shown.carp_status(vip.vhid):
        return "ok", f"vhid {vip.vhid} runs here (Check judges its election)"
    own = [a.address for a in (shown.inet + shown.inet6 if shown else [])]
    heard = sorted({a.source for a in ads if a.vhid == vip.vhid and not any(facts.same_address(a.source, o)
                                                                            for o in own)})
    foreign = [s for s in heard if not s.lower().startswith("fe80:")
               and not any(facts.same_address(s, h) for h in t.cluster_hosts)]
    if foreign:
        return "failed", (f"vhid {vip.vhid} is already advertised on {vip.interface} by {', '.join(foreign)}, which "
                          "is not a node of this cluster (another CARP or VRRP device uses it). Choose another vhid, "
                          "unique on this network segment.")
    if heard:
        return "ok", f"vhid {vip.vhid}: advertisements heard from {', '.join(heard)}"
    if vip.existing:
        return "warning", (f"{t.server} heard no advertisement of vhid {vip.vhid} on {vip.interface}, though the "
                           "other nodes run it: multicast may be blocked between the nodes (IGMP snooping, a cloud "
                           "network, a hypervisor's filter), and then every node would be MASTER. Allow 224.0.0.18 "
                           "and ff02::12 on the segment, or choose unicast (FreeBSD 14).")
    return "ok", f"vhid {vip.vhid}: no other device advertises it"


def _judge_heard(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome:
    interfaces = _multicast_interfaces(t)
    if not interfaces:
        return ok("every service IP announces by unicast: nothing to listen for")
    found: dict[str, list[str]] = {"failed": [], "warning": [], "ok": []}
    for n, (name, _) in enumerate(interfaces):
        shown, ads = v[2 * n].get(name), v[2 * n + 1]
        if ads is None:
            why = (r[2 * n + 1].stderr.strip().splitlines() or ["no output"])[-1][:200]
            found["ok"].append(f"could not listen on {name} ({why}); vhid collisions there were not looked for")
            continue
        for vip in (x for x in t.vips if x.interface == name and not x.unicast):
            verdict, why = _hearing(t, vip, shown, ads)
            found[verdict].append(why)
    if found["failed"]:
        return failed(" ".join(found["failed"]))
    if found["warning"]:
        return Outcome(Verdict.WARNING, " ".join(found["warning"]))
    listened = ", ".join(f"{name} {secs} s" for name, secs in interfaces)
    return ok(f"listened on {listened}: " + "; ".join(found["ok"]))


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
    Step("vip-interface", Phase.PREFLIGHT, "Service IP's interface ready", _vip_interface_reads,
         _judge_vip_interface, per_vip=True),
    # Listen before judging addresses and vhids: a device that already advertises the vhid is named.
    Step("carp-heard", Phase.PREFLIGHT, "CARP advertisements on the segment", _heard_reads, _judge_heard),
    Step("vip-free", Phase.PREFLIGHT, "Addresses not used by another host",
         lambda t: [facts.Ifconfig(t.sip.interface), *(facts.Ping(h, 1) for h in t.sip.hosts)], _judge_vip_free,
         per_vip=True),
    Step("vhid-free", Phase.PREFLIGHT, "vhid free on the interface", lambda t: [facts.Ifconfig(t.sip.interface)],
         _judge_vhid_free, per_vip=True),
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
