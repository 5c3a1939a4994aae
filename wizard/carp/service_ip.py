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
from .steps import Change, Outcome, Phase, Step, Target, backup_first, failed, ok

PASS_REF = "$CARP_PASS"  # noqa: S105 - a shell variable name, not a secret
SYSCTL_CONF = "/etc/sysctl.conf"
RC_CONF = "/etc/rc.conf"


def backup_skews(count: int, master_skew: int = 0) -> list[int]:
    """advskew of the backups, in the admin's order: 100, 200, ... (spread below 255 when there are many)."""
    if count <= 2:
        return [max(master_skew + 1, 100 * (i + 1)) for i in range(count)]
    return [min(254, master_skew + 1 + round((i + 1) * (253 - master_skew) / count)) for i in range(count)]


def alias_value(t: Target, password: str = PASS_REF) -> str:
    base = f" advbase {int(t.advbase)}" if t.advbase != 1 else ""
    return (f"inet vhid {int(t.vhid)} advskew {int(t.advskew)}{base} pass {password} "
            f"alias {t.vip}/{int(t.vip_prefix)}")


def with_password(before: str, after: str) -> str:
    """A shell word: the literal parts single-quoted, the password expanded from $CARP_PASS between them."""
    return f'{q(before)}"{PASS_REF}"{q(after)}'


def alias_assignment(t: Target, slot: int | str) -> str:
    """`ifconfig_IF_aliasN=...` for sysrc, every literal part quoted."""
    before, after = alias_value(t).split(PASS_REF)
    return f"{q(alias_var(t, slot))}={with_password(before, after)}"


def alias_var(t: Target, slot: int | str) -> str:
    return f"ifconfig_{t.interface}_alias{slot}"


def aliases(rc_text: str, iface: str) -> dict[int, str]:
    """ifconfig_<iface>_aliasN values by N, from /etc/rc.conf's text."""
    pattern = re.compile(rf"^ifconfig_{re.escape(iface)}_alias(\d+)$")
    return {int(m.group(1)): v for k, v in parse_rc(rc_text).items() if (m := pattern.match(k))}


def alias_slot(rc_text: str, t: Target) -> tuple[int, str | None]:
    """The alias number for this vhid: the line it already has, else the first after the consecutive ones."""
    found = aliases(rc_text, t.interface)
    for n, value in sorted(found.items()):
        if re.search(rf"(^|\s)vhid\s+{t.vhid}(\s|$)", value):
            return n, value
    n = 0
    while n in found:
        n += 1
    return n, None


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
    """Exit 0 when rc.conf's line for the vhid carries exactly the intended password (compared on the server)."""
    var = q(alias_var(t, ""))
    return (f"for n in $(seq 0 63); do v=$(sysrc -n {var}$n 2>/dev/null) || break; "
            f"case \"$v\" in *\"vhid {int(t.vhid)} \"*) case \"$v\" in *\" pass {PASS_REF} alias \"*) exit 0;; esac;; "
            "esac; done; exit 1")


class PasswordCurrent:
    """Whether rc.conf's line for the vhid carries the intended password (the comparison runs on the server)."""

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
    line = rf'^[[:space:]]*carp: [A-Z]+ vhid {int(t.vhid)} advbase [0-9]+ advskew [0-9]+ key "(.*)"$'
    return (f"k=$(ifconfig -k {q(t.interface)} | sed -n -E {q('s/' + line + '/\\1/p')}); "
            f'[ -n "$k" ] && [ "$k" = "$(printf %.19s "{PASS_REF}")" ]')


class RuntimeKeyCurrent:
    """Whether the running vhid's key is the intended password (Check's "re-apply one password" is then real)."""

    def __init__(self, t: Target) -> None:
        self.t = t

    def command(self) -> str:
        return runtime_key_command(self.t)

    def parse(self, result: CommandResult) -> bool:
        return result.ok


def set_vhid_command(t: Target, *, add: bool) -> str:
    address = f" alias {q(f'{t.vip}/{int(t.vip_prefix)}')}" if add else ""
    return (f"ifconfig {q(t.interface)} {'inet ' if add else ''}vhid {int(t.vhid)} advskew {int(t.advskew)} "
            f"advbase {int(t.advbase)} pass \"{PASS_REF}\"{address}")


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


def _judge_vip_now(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    interfaces, password_current, key_current = v
    iface = interfaces.get(t.interface)
    status = iface.carp_status(t.vhid) if iface else None
    has_vip = bool(iface and iface.has_carp_address(t.vip, t.vhid))
    same_params = status is not None and status.advskew == t.advskew and status.advbase == t.advbase
    # The running key (root's ifconfig -k) and rc.conf's line are both compared on the server with the password.
    if has_vip and same_params and password_current and key_current and not t.reapply:
        return ok(f"{t.vip} is on {t.interface} with vhid {t.vhid}, advskew {t.advskew}, the intended key")
    if has_vip:
        why = (" (the running key differed)" if not key_current else
               " after an unhealthy check" if t.reapply and same_params and password_current else "")
        return Change([set_vhid_command(t, add=False)],
                      f"update vhid {t.vhid} (advskew {t.advskew}, advbase {t.advbase}, password){why}")
    return Change([set_vhid_command(t, add=True)], f"add {t.vip}/{t.vip_prefix} with vhid {t.vhid}, "
                  f"advskew {t.advskew}")


def _pass_in(line: str | None) -> str:
    m = re.search(r"\spass\s+(\S+)", line or "")
    return m.group(1) if m else ""


def _judge_vip_persist(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    rc_text, password_current = v
    slot, current = alias_slot(rc_text, t)
    if current and current == alias_value(t, _pass_in(current)) and password_current:
        return ok(f"{RC_CONF} has {alias_var(t, slot)} for vhid {t.vhid}")
    # sysrc prints `NAME: OLD -> NEW`, and OLD carries the previous password: not kept.
    return Change([backup_first(RC_CONF, t.stamp), f"sysrc {alias_assignment(t, slot)} >/dev/null"],
                  f"write {alias_var(t, slot)} in {RC_CONF}")


def _vip_persist_plan(t: Target) -> list[str]:
    return [f"sysrc {alias_assignment(t, 'K')} >/dev/null   # K: this vhid's line, else the next free number"]


# -- remove ---------------------------------------------------------------------------------------
def _judge_remove_now(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    iface = v[0].get(t.interface)
    if not (iface and iface.has_carp_address(t.vip, t.vhid)):
        return ok(f"{t.vip} is not on {t.interface}")
    return Change([f"ifconfig {q(t.interface)} inet {q(t.vip)} -alias"], f"remove {t.vip} (vhid {t.vhid}) now")


def _judge_remove_persist(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
    slot, current = alias_slot(v[0], t)
    if current is None:
        return ok(f"{RC_CONF} has no alias line for vhid {t.vhid}")
    rest = [n for n in sorted(aliases(v[0], t.interface)) if n != slot]
    cmds = [backup_first(RC_CONF, t.stamp)]
    # Later aliases move down so the numbers stay consecutive; values are copied on the server, so other
    # vhids' passwords never travel in a command or come back in output.
    for new, old in enumerate(rest):
        if new != old:
            cmds.append(f"v=$(sysrc -n {q(alias_var(t, old))}) && sysrc {q(alias_var(t, new))}=\"$v\" >/dev/null")
    cmds.append(f"sysrc -x {q(alias_var(t, len(rest)))}")
    return Change(cmds, f"remove {alias_var(t, slot)} from {RC_CONF}")


CONFIGURE: list[Step] = [
    Step("preempt", Phase.CONFIGURE, "preempt on now", lambda t: [facts.SysctlInt(facts.PREEMPT)], _judge_preempt,
         lambda t: [f"sysctl {facts.PREEMPT}=1"]),
    Step("preempt-persist", Phase.CONFIGURE, "preempt in /etc/sysctl.conf", lambda t: [facts.FileText(SYSCTL_CONF)],
         _judge_preempt_persist, lambda t: sysctl_conf_set(facts.PREEMPT, "1", t.stamp)),
    Step("vip-now", Phase.CONFIGURE, "Service IP on the interface now",
         lambda t: [facts.Ifconfig(t.interface), PasswordCurrent(t), RuntimeKeyCurrent(t)], _judge_vip_now,
         lambda t: [set_vhid_command(t, add=True)]),
    Step("vip-persist", Phase.CONFIGURE, "Service IP in /etc/rc.conf",
         lambda t: [facts.FileText(RC_CONF), PasswordCurrent(t)], _judge_vip_persist, _vip_persist_plan),
]
REMOVE: list[Step] = [
    Step("vip-remove-now", Phase.REMOVE, "Service IP off the interface", lambda t: [facts.Ifconfig(t.interface)],
         _judge_remove_now),
    Step("vip-remove-persist", Phase.REMOVE, "Service IP out of /etc/rc.conf", lambda t: [facts.FileText(RC_CONF)],
         _judge_remove_persist),
]
