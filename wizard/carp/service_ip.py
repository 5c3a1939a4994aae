"""The service IP: the rc.conf alias line, the runtime ifconfig, preempt, and the cluster's CARP state.

Pure: builds commands and judges outputs. The CARP password never appears in a command: commands refer
to "$CARP_PASS", which the runner reads from stdin on the server (so it is in no transcript or log).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from . import facts
from .rcconf import parse_rc
from .steps import Change, CommandResult, Outcome, Step, Target

PASS_REF = "$CARP_PASS"  # noqa: S105 - a shell variable name, not a secret
SYSCTL_CONF = "/etc/sysctl.conf"
RC_CONF = "/etc/rc.conf"
q = shlex.quote


@dataclass(frozen=True)
class CarpTarget(Target):
    """A Target plus what the service IP needs on this node."""

    advskew: int = 0
    advbase: int = 1
    vip_prefix: int = 32
    reapply: bool = False  # the last check found the cluster unhealthy: re-apply what ifconfig cannot show


def backup_skews(count: int, master_skew: int = 0) -> list[int]:
    """advskew of the backups, in the admin's order: 100, 200, ... (spread below 255 when there are many)."""
    if count <= 2:
        return [max(master_skew + 1, 100 * (i + 1)) for i in range(count)]
    return [min(254, master_skew + 1 + round((i + 1) * (253 - master_skew) / count)) for i in range(count)]


def alias_value(t: CarpTarget, password: str = PASS_REF) -> str:
    base = f" advbase {t.advbase}" if t.advbase != 1 else ""
    return f"inet vhid {t.vhid} advskew {t.advskew}{base} pass {password} alias {t.vip}/{t.vip_prefix}"


def aliases(rc_text: str, iface: str) -> dict[int, str]:
    """ifconfig_<iface>_aliasN values by N, from /etc/rc.conf's text."""
    pattern = re.compile(rf"^ifconfig_{re.escape(iface)}_alias(\d+)$")
    return {int(m.group(1)): v for k, v in parse_rc(rc_text).items() if (m := pattern.match(k))}


def alias_slot(rc_text: str, t: CarpTarget) -> tuple[int, str | None]:
    """The alias number for this vhid: the line it already has, else the first after the consecutive ones."""
    found = aliases(rc_text, t.interface)
    for n, value in sorted(found.items()):
        if re.search(rf"(^|\s)vhid\s+{t.vhid}(\s|$)", value):
            return n, value
    n = 0
    while n in found:
        n += 1
    return n, None


def _vhid_status(text: str, t: Target) -> facts.CarpStatus | None:
    iface = facts.parse_ifconfig(text).get(t.interface)
    return next((c for c in (iface.carp if iface else []) if c.vhid == t.vhid), None)


def _has_vip(text: str, t: Target) -> bool:
    iface = facts.parse_ifconfig(text).get(t.interface)
    return bool(iface and any(a.address == t.vip and a.vhid == t.vhid for a in iface.inet))


# -- per-node operations --------------------------------------------------------------------------
def _judge_preempt(t: Target, r: list[CommandResult]) -> Outcome | Change:
    if facts.parse_sysctl_int(r[0].code, r[0].stdout) == 1:
        return Outcome("ok", "net.inet.carp.preempt is 1")
    if r[0].code != 0:
        return Outcome("failed", f"carp is not loaded on {t.server} ({r[0].stderr.strip()}). Run Prepare first.")
    return Change(["sysctl net.inet.carp.preempt=1"], "turn preempt on, so the preferred master takes the VIP back")


def _sysctl_conf_value(text: str, name: str) -> str | None:
    value = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and line.split("=", 1)[0].strip() == name:
            value = line.split("=", 1)[1].strip()
    return value


def sysctl_conf_set(name: str, value: str, stamp: str) -> list[str]:
    """Replace or add NAME=VALUE in /etc/sysctl.conf atomically (temp file + rename), after a one-time backup."""
    backup = f"{SYSCTL_CONF}.carpweb-{stamp}"
    pattern = "^[[:space:]]*" + re.escape(name).replace("\\.", "[.]") + "[[:space:]]*="
    return [
        f"if [ -f {SYSCTL_CONF} ] && [ ! -e {q(backup)} ]; then cp -p {SYSCTL_CONF} {q(backup)}; fi",
        f"t=$(mktemp {SYSCTL_CONF}.XXXXXX) && {{ grep -v -E {q(pattern)} {SYSCTL_CONF} || true; }} > \"$t\" && "
        f"echo {q(name + '=' + value)} >> \"$t\" && chmod 644 \"$t\" && mv \"$t\" {SYSCTL_CONF}",
    ]


def _judge_preempt_persist(t: Target, r: list[CommandResult]) -> Outcome | Change:
    if _sysctl_conf_value(r[0].stdout, "net.inet.carp.preempt") == "1":
        return Outcome("ok", "/etc/sysctl.conf has net.inet.carp.preempt=1")
    return Change(sysctl_conf_set("net.inet.carp.preempt", "1", t.stamp), "persist preempt in /etc/sysctl.conf")


def _judge_vip_now(t: Target, r: list[CommandResult]) -> Outcome | Change:
    assert isinstance(t, CarpTarget)
    status = _vhid_status(r[0].stdout, t)
    has_vip = _has_vip(r[0].stdout, t)
    same_params = status is not None and status.advskew == t.advskew and status.advbase == t.advbase
    # ifconfig never shows the password; rc.conf's line, compared on the server, tells whether it changed.
    password_current = r[1].code == 0
    if has_vip and same_params and password_current and not t.reapply:
        return Outcome("ok", f"{t.vip} is on {t.interface} with vhid {t.vhid}, advskew {t.advskew}")
    if has_vip:
        cmd = (f"ifconfig {q(t.interface)} vhid {t.vhid} advskew {t.advskew} advbase {t.advbase} "
               f"pass \"{PASS_REF}\"")
        why = " after an unhealthy check" if t.reapply and same_params and password_current else ""
        return Change([cmd], f"update vhid {t.vhid} (advskew {t.advskew}, advbase {t.advbase}, password){why}")
    return Change(_vip_add_changes(t), f"add {t.vip}/{t.vip_prefix} with vhid {t.vhid}, advskew {t.advskew}")


def _vip_add_changes(t: Target) -> list[str]:
    assert isinstance(t, CarpTarget)
    return [f"ifconfig {q(t.interface)} inet vhid {t.vhid} advskew {t.advskew} advbase {t.advbase} "
            f"pass \"{PASS_REF}\" alias {t.vip}/{t.vip_prefix}"]


def _vip_persist_plan(t: Target) -> list[str]:
    assert isinstance(t, CarpTarget)
    return [f"sysrc ifconfig_{t.interface}_aliasK=\"{alias_value(t)}\"   "
            "# K: this vhid's line, else the next free number"]


def _pass_in(line: str | None) -> str:
    m = re.search(r"\spass\s+(\S+)", line or "")
    return m.group(1) if m else ""


def _judge_vip_persist(t: Target, r: list[CommandResult]) -> Outcome | Change:
    assert isinstance(t, CarpTarget)
    slot, current = alias_slot(r[0].stdout, t)
    want_shape = alias_value(t, _pass_in(current)) if current else None
    if current and current == want_shape and r[1].code == 0:
        return Outcome("ok", f"/etc/rc.conf has ifconfig_{t.interface}_alias{slot} for vhid {t.vhid}")
    backup = f"{RC_CONF}.carpweb-{t.stamp}"
    return Change([
        f"if [ -f {RC_CONF} ] && [ ! -e {q(backup)} ]; then cp -p {RC_CONF} {q(backup)}; fi",
        f"sysrc ifconfig_{t.interface}_alias{slot}=\"{alias_value(t)}\"",
    ], f"write ifconfig_{t.interface}_alias{slot} in /etc/rc.conf")


def pass_check_command(t: Target) -> str:
    """Exit 0 when rc.conf's line for the vhid carries exactly the intended password (compared on the server)."""
    slot_var = f"ifconfig_{t.interface}_alias"
    return (f"for n in $(seq 0 63); do v=$(sysrc -n {slot_var}$n 2>/dev/null) || break; "
            f"case \"$v\" in *\"vhid {t.vhid} \"*) case \"$v\" in *\" pass {PASS_REF} alias \"*) exit 0;; esac;; esac; "
            "done; exit 1")


def _judge_remove_now(t: Target, r: list[CommandResult]) -> Outcome | Change:
    if not _has_vip(r[0].stdout, t):
        return Outcome("ok", f"{t.vip} is not on {t.interface}")
    return Change([f"ifconfig {q(t.interface)} inet {t.vip} -alias"], f"remove {t.vip} (vhid {t.vhid}) now")


def _judge_remove_persist(t: Target, r: list[CommandResult]) -> Outcome | Change:
    assert isinstance(t, CarpTarget)
    slot, current = alias_slot(r[0].stdout, t)
    if current is None:
        return Outcome("ok", f"/etc/rc.conf has no alias line for vhid {t.vhid}")
    found = aliases(r[0].stdout, t.interface)
    rest = [n for n in sorted(found) if n != slot]
    var = f"ifconfig_{t.interface}_alias"
    backup = f"{RC_CONF}.carpweb-{t.stamp}"
    cmds = [f"if [ -f {RC_CONF} ] && [ ! -e {q(backup)} ]; then cp -p {RC_CONF} {q(backup)}; fi"]
    # Later aliases move down so the numbers stay consecutive; values are copied on the server, so other
    # vhids' passwords never travel in a command or come back in output.
    for new, old in enumerate(rest):
        if new != old:
            cmds.append(f"v=$(sysrc -n {var}{old}) && sysrc {var}{new}=\"$v\" >/dev/null")
    cmds.append(f"sysrc -x {var}{len(rest)}")
    return Change(cmds, f"remove {var}{slot} from /etc/rc.conf")


REMOVE_STEPS: list[Step] = [
    Step("vip-remove-now", "remove", "Service IP off the interface", lambda t: [f"ifconfig {q(t.interface)}"],
         _judge_remove_now),
    Step("vip-remove-persist", "remove", "Service IP out of /etc/rc.conf", lambda t: [f"cat {RC_CONF}"],
         _judge_remove_persist),
]

CONFIGURE_STEPS: list[Step] = [
    Step("preempt", "configure", "preempt on now", lambda t: ["sysctl -n net.inet.carp.preempt"], _judge_preempt,
         lambda t: ["sysctl net.inet.carp.preempt=1"]),
    Step("preempt-persist", "configure", "preempt in /etc/sysctl.conf", lambda t: [f"cat {SYSCTL_CONF}"],
         _judge_preempt_persist, lambda t: sysctl_conf_set("net.inet.carp.preempt", "1", t.stamp)),
    Step("vip-now", "configure", "Service IP on the interface now",
         lambda t: [f"ifconfig {q(t.interface)}", pass_check_command(t)], _judge_vip_now, _vip_add_changes),
    Step("vip-persist", "configure", "Service IP in /etc/rc.conf",
         lambda t: [f"cat {RC_CONF}", pass_check_command(t)], _judge_vip_persist, _vip_persist_plan),
]


# -- cluster-wide check ---------------------------------------------------------------------------
@dataclass
class NodeFacts:
    name: str
    state: str | None  # MASTER, BACKUP, INIT or None (no vhid)
    advskew: int | None
    has_vip: bool
    demotion: int | None
    preempt: int | None
    rc_line: str | None
    maintenance: bool = False
    reachable: bool = True
    error: str = ""


@dataclass
class Diagnosis:
    healthy: bool
    master: str | None
    problems: list[str] = field(default_factory=list)


def node_facts(name: str, t: CarpTarget, ifconfig_out: str, demotion: CommandResult, preempt: CommandResult,
               rc_text: str, maintenance: bool = False) -> NodeFacts:
    status = _vhid_status(ifconfig_out, t)
    return NodeFacts(name, status.state if status else None, status.advskew if status else None,
                     _has_vip(ifconfig_out, t), facts.parse_sysctl_int(demotion.code, demotion.stdout),
                     facts.parse_sysctl_int(preempt.code, preempt.stdout), alias_slot(rc_text, t)[1], maintenance)


def diagnose(nodes: list[NodeFacts], vhid: int, vip_answers: bool | None) -> Diagnosis:
    """One MASTER and the rest BACKUP is healthy; anything else gets the likely cause from the pitfall list."""
    problems: list[str] = []
    down = [n for n in nodes if not n.reachable]
    for n in down:
        problems.append(f"{n.name} is unreachable ({n.error}).")
    up = [n for n in nodes if n.reachable]
    masters = [n.name for n in up if n.state == "MASTER"]
    missing = [n.name for n in up if n.state is None or not n.has_vip]
    for name in missing:
        problems.append(f"{name} has no vhid {vhid} with the service IP: run Configure.")
    inits = [n.name for n in up if n.state == "INIT"]
    if inits:
        problems.append(f"{', '.join(inits)} in INIT: the interface is down or has no carrier, or a hypervisor "
                        "drops CARP multicast (allow promiscuous mode / MAC changes / forged transmits).")
    if len(masters) > 1:
        problems.append(f"Split brain: {' and '.join(masters)} are all MASTER for vhid {vhid}. Likely causes: the "
                        "CARP password or the address list differs between nodes, multicast is blocked between "
                        "them (IGMP snooping, clouds), or another device on the segment uses vhid "
                        f"{vhid}. Run Configure to re-apply one password everywhere, then check the switch.")
    if not masters and up and not missing and not inits:
        if vip_answers:
            problems.append(f"No node is MASTER, yet the service IP answers: another device on the segment holds "
                            f"vhid {vhid} or the address (a vhid collision or a rogue speaker). Find it with "
                            "`tcpdump -ni em0 -c 20 -t vrrp -T carp` and give this cluster a free vhid.")
        else:
            problems.append("No node is MASTER and the service IP does not answer.")
    for n in up:
        if n.demotion and not n.maintenance:
            problems.append(f"{n.name} has net.inet.carp.demotion={n.demotion} left raised (a drill or maintenance "
                            "not undone, or send errors): it will not take the VIP back. Run Check to repair.")
        if n.preempt == 0:
            problems.append(f"{n.name} has net.inet.carp.preempt=0: no failback after the master returns.")
        if n.rc_line is None and n.state is not None:
            problems.append(f"{n.name}: the vhid is configured now but not in /etc/rc.conf; it is lost at reboot.")
        elif n.rc_line is not None and n.advskew is not None and f"advskew {n.advskew} " not in n.rc_line:
            problems.append(f"{n.name}: /etc/rc.conf and the running advskew ({n.advskew}) disagree.")
    in_maint = [n for n in up if n.maintenance]
    if in_maint and len(in_maint) == len(nodes):
        problems.append("Every node is in maintenance: the VIP has no preferred home.")
    healthy = len(masters) == 1 and not problems
    return Diagnosis(healthy, masters[0] if len(masters) == 1 else None, problems)


def outage_from_ping(text: str, interval: float) -> tuple[float, int, int]:
    """From a FreeBSD `ping -i` transcript: the longest run of missing replies, in seconds; sent; received."""
    seqs = sorted({int(m.group(1)) for m in re.finditer(r"icmp_seq=(\d+)", text)})
    stats = re.search(r"(\d+) packets transmitted, (\d+) packets received", text)
    sent = int(stats.group(1)) if stats else (seqs[-1] + 1 if seqs else 0)
    received = int(stats.group(2)) if stats else len(seqs)
    if not seqs:
        return sent * interval, sent, received
    gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False)]
    longest = max([seqs[0], *gaps, sent - 1 - seqs[-1]] if sent else gaps or [0])
    return longest * interval, sent, received
