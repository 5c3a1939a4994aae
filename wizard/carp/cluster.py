"""The cluster as CARP sees it: each node's facts, the diagnosis, demotion, and CARP's timing bounds.

Pure decisions for Check, the failover drill and maintenance; execution/cluster_ops.py sequences them
over SSH. Timing comes from carp(4): a backup takes over after 3 x advbase + advskew/256 seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import facts, transition_log
from .facts import Fact, q
from .service_ip import RC_CONF, alias_slot
from .steps import Target, Vip

CARP_SYSCTLS = "net.inet.carp"  # the node whose variables Check reads (demotion, preempt)
DEMOTION = 240  # what a drill or maintenance adds (FreeBSD's own demotion factors are 240)
MAX_SKEW = 255
# Extra seconds on top of the master-down bound while waiting for a transition to show: process start,
# the lab's ucarp waking only when poll() returns, SSH round trips. One margin for every wait.
TRANSITION_MARGIN = 7.0
PROBE_INTERVAL = 0.1  # seconds between the drill's pings of the VIP
PROBE_AFTER = 5.0  # seconds of pings past the slowest takeover: the new master, and the stop's own latency
PROBE_FIRST_REPLY = 5.0  # seconds each address may take to answer the prober once; nothing is changed before


def master_down_bound(advbase: int, advskew: int) -> float:
    """carp(4): how long a backup waits for a silent master before it takes over."""
    return 3 * advbase + advskew / 256


def probe_count(advbase: int) -> int:
    """The drill's pings: the slowest takeover carp(4) allows (the master-down bound at the largest skew) and
    PROBE_AFTER more, so the window covers the outage at any advbase (90 pings at advbase 1)."""
    return math.ceil((master_down_bound(advbase, MAX_SKEW) + PROBE_AFTER) / PROBE_INTERVAL)


def transition_deadline(advbase: int) -> float:
    """How long to wait for any CARP transition (takeover, failback, settling after a change)."""
    return master_down_bound(advbase, MAX_SKEW) + TRANSITION_MARGIN


def wanted_demotion(maintenance: bool) -> int:
    return DEMOTION if maintenance else 0


def allow_command(on: bool) -> str:
    """The failure drill's switch. ip_carp.c's carp_sc_state() treats net.inet.carp.allow=0 like a dead link: it
    stops the advertisement callout and sets every vhid INIT ("hardware interface down"), without sending a demoted
    advertisement first, so the backups wait the master-down interval as they would for a crashed master. Back at 1,
    the vhids start again and the kernel takes its own interface-down demotion back."""
    return f"sysctl {facts.ALLOW}={1 if on else 0}"


def set_demotion_command(current: int, wanted: int) -> str | None:
    """The demotion counter adds what is written: write the difference, or nothing when it is right."""
    if current == wanted:
        return None
    return f"sysctl {facts.DEMOTION}={int(wanted - current)}"


def probe_command(vip: str, count: int, interval: float = PROBE_INTERVAL) -> str:
    """FreeBSD ping of the VIP every `interval` s, each reply waited for 200 ms at most (ping6 for IPv6)."""
    if ":" in vip:
        return f"ping6 -c {int(count)} -i {float(interval):g} {q(vip)}"
    return f"ping -c {int(count)} -i {float(interval):g} -W 200 {q(vip)}"


def reads(t: Target) -> list[Fact[Any]]:
    """What Check reads on each node: every interface (its service IPs may sit on several), CARP's sysctls,
    rc.conf and the devd rule."""
    return [facts.Ifconfig(), facts.SysctlTree(CARP_SYSCTLS), facts.FileText(RC_CONF),
            facts.FileText(transition_log.RULE)]


@dataclass
class VipFacts:
    """One service IP on one node."""

    state: str | None  # MASTER, BACKUP, INIT or None (no vhid)
    advskew: int | None
    has_vip: bool  # every address is on the vhid
    rc_line: str | None  # its first address's line in rc.conf


@dataclass
class NodeFacts:
    name: str
    vips: dict[str, VipFacts]  # by Vip.key
    demotion: int | None
    preempt: int | None
    maintenance: bool = False
    reachable: bool = True
    allow: int | None = None
    error: str = ""
    events_rule: str | None = None  # the devd rule's text as found (None: not read)

    @classmethod
    def unreachable(cls, name: str, error: str, maintenance: bool = False) -> NodeFacts:
        return cls(name, {}, None, None, maintenance, reachable=False, error=error)

    def vip(self, key: str) -> VipFacts:
        return self.vips.get(key) or VipFacts(None, None, False, None)

    @property
    def states(self) -> set[str | None]:
        return {f.state for f in self.vips.values()}

    @property
    def shown_state(self) -> str:
        if not self.reachable:
            return "unreachable"
        states = [f.state or "no vhid" for f in self.vips.values()]
        if len(set(states)) == 1:
            return states[0]
        return ", ".join(f"{s} (vhid {k.rsplit(':', 1)[-1]})" for k, s in zip(self.vips, states, strict=True)) \
            or "no vhid"


def node_facts(t: Target, values: list[Any], maintenance: bool = False) -> NodeFacts:
    """A node's facts from the values of `reads(t)`, for every service IP of the target."""
    interfaces, sysctls, rc_text, rule_text = values
    vips = {}
    for vip in t.vips:
        per = t.for_vip(vip)
        iface = interfaces.get(vip.interface)
        status = iface.carp_status(vip.vhid) if iface else None
        vips[vip.key] = VipFacts(status.state if status else None, status.advskew if status else None,
                                 bool(iface and all(iface.has_carp_address(h, vip.vhid) for h in vip.hosts)),
                                 alias_slot(rc_text, per)[1])
    return NodeFacts(t.server, vips, sysctls.get(facts.DEMOTION), sysctls.get(facts.PREEMPT), maintenance,
                     events_rule=rule_text, allow=sysctls.get(facts.ALLOW))


def state_of(interfaces: dict[str, facts.Interface], vip: Vip) -> str | None:
    iface = interfaces.get(vip.interface)
    status = iface.carp_status(vip.vhid) if iface else None
    return status.state if status else None


@dataclass
class Diagnosis:
    healthy: bool
    master: str | None  # the node that is MASTER of every service IP (None: none, or they are split)
    problems: list[str] = field(default_factory=list)
    masters: dict[str, str | None] = field(default_factory=dict)  # by Vip.key: its one MASTER, if it has one


def _state_problems(up: list[NodeFacts], vip: Vip, vip_answers: bool | None) -> list[str]:
    problems: list[str] = []
    what = vip.label
    masters = [n.name for n in up if n.vip(vip.key).state == "MASTER"]
    missing = [n.name for n in up if n.vip(vip.key).state is None or not n.vip(vip.key).has_vip]
    for name in missing:
        problems.append(f"{name} lacks {what} or one of its addresses: run Configure.")
    inits = [n.name for n in up if n.vip(vip.key).state == "INIT"]
    if inits:
        problems.append(f"{', '.join(inits)} in INIT for {what}: the interface is down or has no carrier, or a "
                        "hypervisor drops CARP multicast (allow promiscuous mode / MAC changes / forged transmits).")
    if len(masters) > 1:
        problems.append(f"Split brain: {' and '.join(masters)} are all MASTER for {what}. Likely causes: the "
                        "CARP password or the address list differs between nodes, multicast is blocked between "
                        "them (IGMP snooping, clouds: choose unicast on FreeBSD 14), or another device on the segment "
                        f"uses vhid {vip.vhid}. Run Configure to re-apply one password everywhere, then check the "
                        "switch.")
    if not masters and up and not missing and not inits:
        if vip_answers:
            problems.append(f"No node is MASTER of {what}, yet it answers: another device on the segment holds "
                            f"vhid {vip.vhid} or the address (a vhid collision or a rogue speaker). Find it with "
                            f"`tcpdump -ni {vip.interface} -c 20 -t vrrp -T carp` and give it a free vhid.")
        else:
            problems.append(f"No node is MASTER of {what} and it does not answer.")
    return problems


def _node_problems(n: NodeFacts, vips: tuple[Vip, ...]) -> list[str]:
    """Node-wide findings, said once per node; the rc.conf ones name the service IP."""
    problems = []
    if n.demotion and not n.maintenance:
        problems.append(f"{n.name} has net.inet.carp.demotion={n.demotion} left raised (a drill or maintenance "
                        "not undone, or send errors): it will not take the VIP back. Run Check to repair.")
    if n.allow == 0:
        problems.append(f"{n.name} has net.inet.carp.allow=0: CARP is off there (a failure drill not undone, or "
                        "turned off by hand); `sysctl net.inet.carp.allow=1` starts it again.")
    if n.preempt == 0:
        problems.append(f"{n.name} has net.inet.carp.preempt=0: no failback after the master returns, and its "
                        "service IPs need not follow one node.")
    for vip in vips:
        f = n.vip(vip.key)
        if f.rc_line is None and f.state is not None:
            problems.append(f"{n.name}: {vip.label} is configured now but not in /etc/rc.conf; it is lost at reboot.")
        elif f.rc_line is not None and f.advskew is not None and f"advskew {f.advskew} " not in f.rc_line:
            problems.append(f"{n.name}: /etc/rc.conf and the running advskew ({f.advskew}) of vhid {vip.vhid} "
                            "disagree.")
    rule = transition_log.rule_problem(n.name, n.events_rule)
    if rule:
        problems.append(rule)
    return problems


def diagnose(nodes: list[NodeFacts], vips: tuple[Vip, ...], vip_answers: dict[str, bool | None]) -> Diagnosis:
    """Per service IP, one MASTER and the rest BACKUP is healthy; every service IP with the same MASTER (preempt
    makes them follow one node); anything else gets the likely cause from the pitfall list."""
    problems = [f"{n.name} is unreachable ({n.error})." for n in nodes if not n.reachable]
    up = [n for n in nodes if n.reachable]
    masters: dict[str, str | None] = {}
    for vip in vips:
        problems += _state_problems(up, vip, vip_answers.get(vip.key))
        found = [n.name for n in up if n.vip(vip.key).state == "MASTER"]
        masters[vip.key] = found[0] if len(found) == 1 else None
    holders = {m for m in masters.values() if m}
    if len(holders) > 1 and all(masters.values()):
        split = "; ".join(f"{m} of {', '.join(f'vhid {v.vhid}' for v in vips if masters[v.key] == m)}"
                          for m in sorted(holders))
        problems.append(f"The nodes split the service IPs: {split}. With preempt they should follow one node: a "
                        "link down on one interface, or an advskew that differs between vhids, holds them apart.")
    for n in up:
        problems += _node_problems(n, vips)
    if up and all(n.maintenance for n in nodes):
        problems.append("Every node is in maintenance: the VIP has no preferred home.")
    common = next(iter(holders)) if len(holders) == 1 and all(masters.values()) else None
    return Diagnosis(bool(vips) and common is not None and not problems, common, problems, masters)


def settled(diagnosis: Diagnosis, home: str | None, expect_home: bool, in_maintenance: set[str]) -> bool:
    """Check is done waiting: healthy, and after a repair or a maintenance change the VIP sits where preempt
    puts it: on its home (the preferred master), or, while that one is in maintenance, on a node that is not."""
    if not diagnosis.healthy or not expect_home:
        return diagnosis.healthy
    if home is not None:
        return diagnosis.master == home
    return diagnosis.master not in in_maintenance


def pick_prober(probes: list[str], nodes: list[NodeFacts], connected: set[str]) -> str | None:
    """Who pings the VIP: a probe server if there is one, else a BACKUP node (never the master itself)."""
    for name in probes:
        if name in connected:
            return name
    for n in nodes:
        if n.states == {"BACKUP"} and n.name in connected:
            return n.name
    return next((n.name for n in nodes if n.name in connected), None)


def ping_counts(text: str) -> tuple[int, int] | None:
    """(sent, received) from a FreeBSD ping's statistics line, or None when it printed none."""
    stats = re.search(r"(\d+) packets transmitted, (\d+) packets received", text)
    return (int(stats.group(1)), int(stats.group(2))) if stats else None


def outage_from_ping(text: str, interval: float) -> tuple[float, int, int]:
    """From a FreeBSD `ping -i` transcript: the longest run of missing replies, in seconds; sent; received."""
    seqs = sorted({int(m.group(1)) for m in re.finditer(r"icmp_seq=(\d+)", text)})
    counts = ping_counts(text)
    sent, received = counts if counts else (seqs[-1] + 1 if seqs else 0, len(seqs))
    if not seqs:
        return sent * interval, sent, received
    gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False)]
    longest = max([seqs[0], *gaps, sent - 1 - seqs[-1]] if sent else gaps or [0])
    return longest * interval, sent, received


def is_reply(line: str) -> bool:
    """A ping output line that shows the VIP answered."""
    return reply_seq(line) is not None


def reply_seq(line: str) -> int | None:
    """The icmp_seq of a ping output line that shows the VIP answered (None for any other line)."""
    m = re.search(r"bytes from .*icmp_seq=(\d+)", line)
    return int(m.group(1)) if m else None


def drill_outage(text: str, interval: float, stop_seq: int | None, needed: float) -> tuple[float | None, str]:
    """The outage a drill's prober saw, or None and why it cannot be told. `stop_seq` is the last reply before CARP
    was stopped; the pings must go on `needed` seconds (the takeover's bound) past it, or a late stop would leave the
    outage outside the window and make it look short."""
    if not text:
        return None, "the prober's ping printed nothing"
    outage, sent, _ = outage_from_ping(text, interval)
    if stop_seq is None:
        return None, "no reply reached the prober before CARP was stopped"
    after = (sent - 1 - stop_seq) * interval
    if after < needed:
        return None, (f"the prober's pings ended {after:.1f} s after CARP was stopped, short of the "
                      f"{needed:.2f} s a takeover may take: the outage was not measured")
    return outage, ""
