"""The service IP on one node: the rc.conf alias line, the runtime ifconfig, preempt; and its removal.

Pure: builds commands and judges outputs. The CARP password never appears in a command: commands refer
to "$CARP_PASS", which the session reads from stdin on the server (so it is in no transcript or log).
"""

from __future__ import annotations

import re
from typing import Any

from . import facts
from .facts import CommandResult, q
from .rcconf import parse_rc
from .steps import MULTICAST, MULTICAST6, Change, Outcome, Phase, Step, Target, Vip, backup_first, failed, ok

PASS_REF = "$CARP_PASS"  # noqa: S105 - a shell variable name, not a secret
SYSCTL_CONF = "/etc/sysctl.conf"
RC_CONF = "/etc/rc.conf"


def backup_skews(count: int, master_skew: int = 0) -> list[int]:
    """advskew of the backups, in the admin's order: 100, 200, ... (spread below 255 when there are many)."""
    if count <= 2:
        return [max(master_skew + 1, 100 * (i + 1)) for i in range(count)]
    return [min(254, master_skew + 1 + round((i + 1) * (253 - master_skew) / count)) for i in range(count)]


def rc_name(interface: str) -> str:
    """The interface as rc.conf's variable names spell it (network.subr's ltr: `.-/+` become `_`)."""
    return re.sub(r"[.\-/+]", "_", interface)


def _carp_words(t: Target, password: str, *, inet6: bool) -> str:
    vip = t.sip
    base = f" advbase {int(vip.advbase)}" if vip.advbase != 1 else ""
    peer = f" peer6 {vip.peer6}" if inet6 and vip.peer6 else f" peer {vip.peer}" if not inet6 and vip.peer else ""
    return f"vhid {int(vip.vhid)} advskew {int(t.advskew)}{base} pass {password}{peer}"


def alias_value(t: Target, address: str, password: str = PASS_REF) -> str:
    """The rc.conf value of one address of the service IP. IPv4 keeps the form carpweb always wrote; IPv6 is
    network.subr's `inet6 ADDR prefixlen N ...`, which rc runs as `ifconfig IF inet6 ADDR prefixlen N ... alias`."""
    host, prefix = Vip.split(address)
    if ":" in host:
        return f"inet6 {host} prefixlen {prefix} {_carp_words(t, password, inet6=True)}"
    return f"inet {_carp_words(t, password, inet6=False)} alias {host}/{prefix}"


def with_password(before: str, after: str) -> str:
    """A shell word: the literal parts single-quoted, the password expanded from $CARP_PASS between them."""
    return f'{q(before)}"{PASS_REF}"{q(after)}'


def alias_assignment(t: Target, address: str, slot: int | str) -> str:
    """`ifconfig_IF_aliasN=...` for sysrc, every literal part quoted."""
    before, after = alias_value(t, address).split(PASS_REF)
    return f"{q(alias_var(t, slot))}={with_password(before, after)}"


def alias_var(t: Target, slot: int | str) -> str:
    return f"ifconfig_{rc_name(t.sip.interface)}_alias{slot}"


def aliases(rc_text: str, iface: str) -> dict[int, str]:
    """ifconfig_<iface>_aliasN values by N, from /etc/rc.conf's text."""
    pattern = re.compile(rf"^ifconfig_{re.escape(rc_name(iface))}_alias(\d+)$")
    return {int(m.group(1)): v for k, v in parse_rc(rc_text).items() if (m := pattern.match(k))}


def line_vhid(value: str) -> int | None:
    m = re.search(r"(?:^|\s)vhid\s+(\d+)(?:\s|$)", value)
    return int(m.group(1)) if m else None


def line_address(value: str) -> str | None:
    """The address an alias line carries: `inet6 ADDR ...`, `inet ... alias ADDR/P` or `inet ADDR/P ...`."""
    words = value.split()
    if len(words) > 1 and words[0] == "inet6":
        return words[1].split("/")[0]
    if "alias" in words[:-1]:
        return words[words.index("alias") + 1].split("/")[0]
    return words[1].split("/")[0] if len(words) > 1 and words[0] == "inet" and "." in words[1] else None


def vhid_lines(rc_text: str, t: Target) -> dict[int, str]:
    """The alias lines of this service IP's vhid on its interface, by number."""
    return {n: v for n, v in aliases(rc_text, t.sip.interface).items() if line_vhid(v) == t.sip.vhid}


def alias_slot(rc_text: str, t: Target, address: str | None = None) -> tuple[int, str | None]:
    """The alias number for an address of this vhid (the first address when None): the line it already has,
    else the first after the consecutive ones."""
    host = Vip.split(address or t.sip.addresses[0])[0]
    found = aliases(rc_text, t.sip.interface)
    for n, value in sorted(found.items()):
        addr = line_address(value)
        if line_vhid(value) == t.sip.vhid and addr and facts.same_address(addr, host):
            return n, value
    n = 0
    while n in found:
        n += 1
    return n, None


def renumber_commands(t: Target, found: dict[int, str], drop: set[int]) -> tuple[list[str], dict[int, str]]:
    """sysrc commands that take the `drop` lines out and move later ones down so the numbers stay consecutive
    (rc stops at the first gap); values are copied on the server, so other vhids' passwords never travel in a
    command or come back. Returns the commands and the lines as they are afterwards."""
    rest = [n for n in sorted(found) if n not in drop]
    cmds = []
    for new, old in enumerate(rest):
        if new != old:
            cmds.append(f"v=$(sysrc -n {q(alias_var(t, old))}) && sysrc {q(alias_var(t, new))}=\"$v\" >/dev/null")
    cmds += [f"sysrc -x {q(alias_var(t, n))}" for n in sorted(found) if n >= len(rest)]
    return cmds, {new: found[old] for new, old in enumerate(rest)}


def sysctl_conf_set(name: str, value: str, stamp: str) -> list[str]:
    """Replace or add NAME=VALUE in /etc/sysctl.conf atomically (temp file + rename), after a one-time backup."""
    pattern = "^[[:space:]]*" + re.escape(name).replace("\\.", "[.]") + "[[:space:]]*="
    conf = q(SYSCTL_CONF)
    return [
        backup_first(SYSCTL_CONF, stamp),
        f"t=$(mktemp {conf}.XXXXXX) && {{ grep -v -E {q(pattern)} {conf} || true; }} > \"$t\" && "
        f"echo {q(name + '=' + value)} >> \"$t\" && chmod 644 \"$t\" && mv \"$t\" {conf}",
    ]


def sysctl_conf_value(text: str, name: str) -> str | None:
    value = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and line.split("=", 1)[0].strip() == name:
            value = line.split("=", 1)[1].strip()
    return value


def pass_check_command(t: Target) -> str:
    """Exit 0 when every rc.conf line of the vhid carries exactly the intended password (compared on the server;
    at least one line must exist)."""
    var = q(alias_var(t, ""))
    return (f"f=1; for n in $(seq 0 63); do v=$(sysrc -n {var}$n 2>/dev/null) || break; "
            f"case \"$v\" in *\"vhid {int(t.sip.vhid)} \"*) "
            f"case \"$v\" in *\" pass {PASS_REF} \"*|*\" pass {PASS_REF}\") f=0;; *) exit 1;; esac;; esac; "
            "done; exit $f")


class PasswordCurrent:
    """Whether rc.conf's lines for the vhid carry the intended password (the comparison runs on the server)."""

    def __init__(self, t: Target) -> None:
        self.t = t

    def command(self) -> str:
        return pass_check_command(self.t)

    def parse(self, result: CommandResult) -> bool:
        return result.ok


def runtime_key_command(t: Target) -> str:
    """Exit 0 when the vhid's running key is the intended password. root's `ifconfig -k` prints ` key "…"` on the
    vhid's carp: line; it is compared on the server with the password from stdin (as ifconfig keeps it: the first
    19 bytes), and only the verdict comes back, never the key."""
    line = rf'^[[:space:]]*carp: [A-Z]+ vhid {int(t.sip.vhid)} advbase [0-9]+ advskew [0-9]+ key "(.*)"$'
    return (f"k=$(ifconfig -k {q(t.sip.interface)} | sed -n -E {q('s/' + line + '/\\1/p')}); "
            f'[ -n "$k" ] && [ "$k" = "$(printf %.19s "{PASS_REF}")" ]')


class RuntimeKeyCurrent:
    """Whether the running vhid's key is the intended password (Check's "re-apply one password" is then real)."""

    def __init__(self, t: Target) -> None:
        self.t = t

    def command(self) -> str:
        return runtime_key_command(self.t)

    def parse(self, result: CommandResult) -> bool:
        return result.ok


def set_vhid_command(t: Target, address: str | None = None, *, announce: bool = False) -> str:
    """`ifconfig IF [inet ... alias ADDR/P | inet6 ADDR/P ... alias] vhid N advskew S advbase B pass "$CARP_PASS"
    [peer X | peer6 X | mcast | mcast6]`: with an address it adds it to the vhid (creating the vhid), without it
    sets the vhid's parameters."""
    vip = t.sip
    head = f"ifconfig {q(vip.interface)}"
    words = f"vhid {int(vip.vhid)} advskew {int(t.advskew)} advbase {int(vip.advbase)} pass \"{PASS_REF}\""
    if address is None:
        # peer/peer6 where unicast is chosen; mcast/mcast6 only to switch back (13.x knows neither word).
        words += f" peer {q(vip.peer)}" if vip.peer else " mcast" if announce else ""
        if any(":" in a for a in vip.addresses):
            words += f" peer6 {q(vip.peer6)}" if vip.peer6 else " mcast6" if announce else ""
        return f"{head} {words}"
    host, prefix = Vip.split(address)
    if ":" in host:
        return f"{head} inet6 {q(f'{host}/{prefix}')} {words}{f' peer6 {q(vip.peer6)}' if vip.peer6 else ''} alias"
    return f"{head} inet {words}{f' peer {q(vip.peer)}' if vip.peer else ''} alias {q(f'{host}/{prefix}')}"


def remove_address_command(interface: str, host: str) -> str:
    return f"ifconfig {q(interface)} {'inet6' if ':' in host else 'inet'} {q(host)} -alias"


# -- configure ------------------------------------------------------------------------------------
def _judge_preempt(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    if v[0] == 1:
        return ok("net.inet.carp.preempt is 1")
    if v[0] is None:
        return failed(f"carp is not loaded on {t.server} ({r[0].stderr.strip()}). Run Prepare first.")
    return Change([f"sysctl {facts.PREEMPT}=1"], "turn preempt on, so the preferred master takes the VIP back")


def _judge_preempt_persist(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    if sysctl_conf_value(v[0], facts.PREEMPT) == "1":
        return ok(f"{SYSCTL_CONF} has {facts.PREEMPT}=1")
    return Change(sysctl_conf_set(facts.PREEMPT, "1", t.stamp), f"persist preempt in {SYSCTL_CONF}")


def _announce_differs(t: Target, status: facts.CarpStatus) -> bool:
    """14.x shows the vhid's peers; before 14 there is nothing to compare (and nothing but multicast)."""
    vip = t.sip
    if status.peer is None:
        return False
    return status.peer != (vip.peer or MULTICAST) or (
        any(":" in a for a in vip.addresses) and status.peer6 != (vip.peer6 or MULTICAST6))


def _judge_vip_now(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    interfaces, password_current, key_current = v
    vip = t.sip
    iface = interfaces.get(vip.interface)
    status = iface.carp_status(vip.vhid) if iface else None
    present = iface.carp_addresses(vip.vhid) if iface else []
    missing = [a for a in vip.addresses if not any(facts.same_address(p.address, Vip.split(a)[0]) for p in present)]
    extra = [p.address for p in present if not any(facts.same_address(p.address, h) for h in vip.hosts)]
    announce = status is not None and _announce_differs(t, status)
    same_params = status is not None and status.advskew == t.advskew and status.advbase == vip.advbase
    # The running key (root's ifconfig -k) and rc.conf's line are both compared on the server with the password.
    if not missing and not extra and same_params and not announce and password_current and key_current \
            and not t.reapply:
        return ok(f"{', '.join(vip.hosts)} on {vip.interface} with vhid {vip.vhid}, advskew {t.advskew}, the "
                  "intended key")
    commands, what = [], []
    if status is not None and not missing and (not same_params or announce or not password_current
                                               or not key_current or t.reapply):
        commands.append(set_vhid_command(t, announce=announce))
        why = (" (the running key differed)" if not key_current else
               " after an unhealthy check" if t.reapply and same_params and password_current else "")
        what.append(f"update vhid {vip.vhid} (advskew {t.advskew}, advbase {vip.advbase}, "
                    f"{'peers, ' if announce else ''}password){why}")
    for address in missing:
        commands.append(set_vhid_command(t, address))
        what.append(f"add {address}")
    if missing and status is not None and announce:  # a new address carries the parameters, not `mcast`
        commands.append(set_vhid_command(t, announce=True))
    for host in extra:
        commands.append(remove_address_command(vip.interface, host))
        what.append(f"remove {host}")
    return Change(commands, "; ".join(what) + f" (vhid {vip.vhid}, advskew {t.advskew})")


def _pass_in(line: str | None) -> str:
    m = re.search(r"\spass\s+(\S+)", line or "")
    return m.group(1) if m else ""


def _judge_vip_persist(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    rc_text, password_current = v
    vip = t.sip
    found = aliases(rc_text, vip.interface)
    stale = {n for n, value in found.items() if line_vhid(value) == vip.vhid and not any(
        facts.same_address(line_address(value) or "", h) for h in vip.hosts)}
    cmds, lines = renumber_commands(t, found, stale) if stale else ([], found)
    writes = []
    for address in vip.addresses:
        host = Vip.split(address)[0]
        slot = next((n for n, value in sorted(lines.items()) if line_vhid(value) == vip.vhid
                     and facts.same_address(line_address(value) or "", host)), None)
        current = lines.get(slot) if slot is not None else None
        if current and current == alias_value(t, address, _pass_in(current)) and password_current:
            continue
        if slot is None:
            slot = 0
            while slot in lines:
                slot += 1
        lines[slot] = alias_value(t, address)
        # sysrc prints `NAME: OLD -> NEW`, and OLD carries the previous password: not kept.
        cmds.append(f"sysrc {alias_assignment(t, address, slot)} >/dev/null")
        writes.append(alias_var(t, slot))
    if not cmds:
        return ok(f"{RC_CONF} has the lines of vhid {vip.vhid} ({', '.join(vip.hosts)})")
    what = ([f"write {', '.join(writes)}"] if writes else []) + ([f"drop {len(stale)} old line(s)"] if stale else [])
    return Change([backup_first(RC_CONF, t.stamp), *cmds], f"{' and '.join(what)} in {RC_CONF}")


def _vip_persist_plan(t: Target) -> list[str]:
    return [f"sysrc {alias_assignment(t, a, 'K')} >/dev/null   # K: this address's line, else the next free number"
            for a in t.sip.addresses]


# -- remove ---------------------------------------------------------------------------------------
def _judge_remove_now(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    vip = t.sip
    iface = v[0].get(vip.interface)
    present = iface.carp_addresses(vip.vhid) if iface else []
    if not present:
        return ok(f"vhid {vip.vhid} has no address on {vip.interface}")
    return Change([remove_address_command(vip.interface, p.address) for p in present],
                  f"remove {', '.join(p.address for p in present)} (vhid {vip.vhid}) now")


def _judge_remove_persist(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    found = aliases(v[0], t.sip.interface)
    drop = set(vhid_lines(v[0], t))
    if not drop:
        return ok(f"{RC_CONF} has no alias line for vhid {t.sip.vhid} on {t.sip.interface}")
    cmds, _ = renumber_commands(t, found, drop)
    return Change([backup_first(RC_CONF, t.stamp), *cmds],
                  f"remove {', '.join(alias_var(t, n) for n in sorted(drop))} from {RC_CONF}")


CONFIGURE: list[Step] = [
    Step("preempt", Phase.CONFIGURE, "preempt on now", lambda t: [facts.SysctlInt(facts.PREEMPT)], _judge_preempt,
         lambda t: [f"sysctl {facts.PREEMPT}=1"]),
    Step("preempt-persist", Phase.CONFIGURE, "preempt in /etc/sysctl.conf", lambda t: [facts.FileText(SYSCTL_CONF)],
         _judge_preempt_persist, lambda t: sysctl_conf_set(facts.PREEMPT, "1", t.stamp)),
    Step("vip-now", Phase.CONFIGURE, "Service IP on the interface now",
         lambda t: [facts.Ifconfig(t.sip.interface), PasswordCurrent(t), RuntimeKeyCurrent(t)], _judge_vip_now,
         lambda t: [set_vhid_command(t, a) for a in t.sip.addresses], per_vip=True),
    Step("vip-persist", Phase.CONFIGURE, "Service IP in /etc/rc.conf",
         lambda t: [facts.FileText(RC_CONF), PasswordCurrent(t)], _judge_vip_persist, _vip_persist_plan,
         per_vip=True),
]
REMOVE: list[Step] = [
    Step("vip-remove-now", Phase.REMOVE, "Service IP off the interface",
         lambda t: [facts.Ifconfig(t.sip.interface)], _judge_remove_now, per_vip=True),
    Step("vip-remove-persist", Phase.REMOVE, "Service IP out of /etc/rc.conf", lambda t: [facts.FileText(RC_CONF)],
         _judge_remove_persist, per_vip=True),
]
