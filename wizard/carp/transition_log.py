"""CARP transitions, FreeBSD's own way: devd runs a small script on every state change, which appends one line
to a node-local log that newsyslog rotates; carpweb's collector follows that log. Pure: files, commands, parsing.

A line: `EPOCH SEQ TIME VHID@IF OLD -> NEW (REASON)`. SEQ counts the node's transitions (kept in /var/db), EPOCH
names the counter (a reinstalled node starts another), so the collector reads every line once, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import facts
from .facts import CommandResult, q
from .shell import printf_text
from .steps import Change, Outcome, Phase, Step, Target, ok

SCRIPT = "/usr/local/libexec/carpweb-carp-event"
RULE = "/usr/local/etc/devd/carpweb.conf"
ROTATION = "/usr/local/etc/newsyslog.conf.d/carpweb.conf"
LOG = "/var/log/carpweb/carp-events.log"
KEPT = 7  # rotated logs newsyslog keeps (uncompressed, so the collector reads them back after an outage)
HEARTBEAT = "# carpweb alive"
HEARTBEAT_SECONDS = 2  # a node that misses two is not counted when carpweb judges who is master

STATES = ("INIT", "BACKUP", "MASTER")
REASON_MAX = 80  # characters of the kernel's reason a line keeps (FreeBSD's longest is ~35)

SCRIPT_TEXT = f"""#!/bin/sh
# Installed by carpweb. devd runs it on every CARP state change (see {RULE}):
#   carpweb-carp-event VHID@IF STATE
# It appends one line to {LOG}: EPOCH SEQ TIME VHID@IF OLD -> NEW (REASON)
# devd's arguments come from the kernel; /var/log/messages can be written by any local user (logger), so only the
# kernel's own line is read, only INIT, BACKUP and MASTER are taken from it, and its reason is cleaned and cut.
sub="$1"; new="$2"; db=/var/db/carpweb
case "$sub" in *[!A-Za-z0-9@_.]*|'') exit 0;; esac
case "$sub" in [0-9]*@[A-Za-z]*) ;; *) exit 0;; esac
case "$new" in INIT|BACKUP|MASTER) ;; *) exit 0;; esac
mkdir -p "$db" /var/log/carpweb
[ -s "$db/epoch" ] || od -An -N6 -tx1 /dev/urandom | tr -d ' \\n' > "$db/epoch"
seq=$(( $(cat "$db/seq" 2>/dev/null || echo 0) + 1 )); echo "$seq" > "$db/seq"
old=$(cat "$db/state.$sub" 2>/dev/null || echo INIT); echo "$new" > "$db/state.$sub"
case "$old" in INIT|BACKUP|MASTER) ;; *) old=INIT;; esac
reason=""
line=$(grep -E "^[A-Z][a-z]{{2}} [ 0-9][0-9] [0-9:]{{8}} [^ ]+ kernel: carp: $sub: (INIT|BACKUP|MASTER) -> $new \\(" \\
  /var/log/messages 2>/dev/null | tail -n 1)
if [ -n "$line" ]; then
  said=${{line##*kernel: carp: $sub: }}; said=${{said%% *}}
  case "$said" in INIT|BACKUP|MASTER) old=$said;; esac
  reason=${{line#*" -> $new ("}}; reason=${{reason%)}}
  reason=$(printf '%s' "$reason" | tr -cd 'A-Za-z0-9 ,./:_-' | cut -c1-{REASON_MAX})
fi
printf '%s %s %s %s %s -> %s (%s)\\n' "$(cat "$db/epoch")" "$seq" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \\
  "$sub" "$old" "$new" "$reason" >> {LOG}
"""
RULE_TEXT = f"""# Installed by carpweb: every CARP state change goes to {LOG} (see {SCRIPT}).
notify 100 {{
	match "system"		"CARP";
	match "type"		"(MASTER|BACKUP|INIT)";
	action "{SCRIPT} $subsystem $type";
}};
"""
ROTATION_TEXT = f"""# Installed by carpweb: rotate the CARP event log at 100 KB, keep {KEPT} uncompressed.
# logfilename                          [owner:group]    mode count size when  flags
{LOG}                      644  {KEPT}     100  *     -
"""
FILES = {SCRIPT: (SCRIPT_TEXT, "755"), ROTATION: (ROTATION_TEXT, "644"), RULE: (RULE_TEXT, "644")}


def write_file(path: str, text: str, mode: str) -> str:
    """Write a whole file atomically (a temporary file, then rename), creating its directory."""
    directory = path.rsplit("/", 1)[0]
    return (f"mkdir -p {q(directory)} && t=$(mktemp {q(path)}.XXXXXX) && printf {printf_text(text)} > \"$t\" && "
            f"chmod {mode} \"$t\" && mv \"$t\" {q(path)}")


def _judge_file(path: str) -> Any:
    text, mode = FILES[path]

    def judge(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
        if v[0] == text:
            return ok(f"{path} is carpweb's")
        commands = [write_file(path, text, mode)]
        if path == RULE:  # devd reads its rules when it starts: restart it only when the rule changed
            commands.append("service devd restart")
        return Change(commands, f"{'install' if not v[0] else 'restore'} {path}")

    return judge


def _judge_removed(path: str) -> Any:
    def judge(t: Target, v: list[Any], r: list[CommandResult]) -> Outcome | Change:
        if not v[0]:
            return ok(f"{path} is not there")
        commands = [f"rm -f {q(path)}"] + (["service devd restart"] if path == RULE else [])
        return Change(commands, f"remove {path}")

    return judge


INSTALL: list[Step] = [
    Step("events-script", Phase.CONFIGURE, "Transition logger script", lambda t: [facts.FileText(SCRIPT)],
         _judge_file(SCRIPT), lambda t: [write_file(SCRIPT, SCRIPT_TEXT, "755")]),
    Step("events-rotation", Phase.CONFIGURE, "newsyslog rotates its log", lambda t: [facts.FileText(ROTATION)],
         _judge_file(ROTATION), lambda t: [write_file(ROTATION, ROTATION_TEXT, "644")]),
    Step("events-rule", Phase.CONFIGURE, "devd reports CARP transitions", lambda t: [facts.FileText(RULE)],
         _judge_file(RULE), lambda t: [write_file(RULE, RULE_TEXT, "644"), "service devd restart"]),
]
UNINSTALL: list[Step] = [
    Step("events-rule-remove", Phase.REMOVE, "devd rule removed", lambda t: [facts.FileText(RULE)],
         _judge_removed(RULE)),
    Step("events-files-remove", Phase.REMOVE, "Logger script and rotation removed",
         lambda t: [facts.FileText(SCRIPT)], _judge_removed(SCRIPT)),
]


def rule_problem(name: str, rule_text: str | None) -> str | None:
    """Check's finding about a node's devd rule (None: as carpweb installs it, or not read)."""
    if rule_text is None or rule_text == RULE_TEXT:
        return None
    state = "missing" if not rule_text else "changed by someone"
    return (f"{name}: the devd rule that reports CARP transitions to carpweb ({RULE}) is {state}: "
            "transitions go unseen until Configure runs again.")


def follow_command(epoch: str, seq: int) -> str:
    """The collector's session: every logged line after (EPOCH, SEQ), kept and rotated ones included, then
    each new one as it is written, and a heartbeat every HEARTBEAT_SECONDS so a dead link shows. When the
    session ends, the whole process group goes with it."""
    files = " ".join(q(f"{LOG}.{n}") for n in range(KEPT - 1, -1, -1))
    awk = f"awk -v e={q(epoch)} -v s={int(seq)} '$1 != e || $2 + 0 > s + 0 {{ print; fflush() }}'"
    return (f"trap '' PIPE; {{ cat {files} 2>/dev/null; exec tail -n +1 -F {q(LOG)} 2>/dev/null; }} | {awk} & "
            f"while sleep {HEARTBEAT_SECONDS}; do echo {q(HEARTBEAT)} || break; done; kill 0")


LINE = re.compile(r"^(\S+) (\d+) (\S+) (\S+)@(\S+) (\S+) -> (\S+) \((.*)\)$")
EPOCH = re.compile(r"^[0-9a-f]{1,32}$")
INTERFACE = re.compile(r"^[A-Za-z0-9_.]{1,15}$")
UNKNOWN = "?"


@dataclass(frozen=True)
class NodeEvent:
    epoch: str
    seq: int
    node_time: datetime | None
    vhid: int
    interface: str
    old: str
    new: str
    reason: str
    malformed: bool = False  # a line carpweb's script would not write: kept, its odd fields replaced


def clean_reason(text: str) -> str:
    """The reason as carpweb keeps it: printable, one line, at most REASON_MAX characters."""
    return "".join(c for c in text if c.isprintable() and c not in "\r\n\t")[:REASON_MAX]


def parse_line(line: str) -> NodeEvent | None:
    """One line of the node's event log, or None (a heartbeat, or not a line carpweb wrote). A line that carries a
    transition's place (epoch and sequence) but odd fields is kept as malformed: its transition is not lost, and
    nothing odd reaches the database (states outside INIT/BACKUP/MASTER, a vhid outside 1..255, long text)."""
    m = LINE.match(line.strip())
    if not m or not EPOCH.match(m.group(1)) or len(m.group(2)) > 18:
        return None
    try:
        when: datetime | None = datetime.strptime(m.group(3), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        when = None
    vhid_text, iface, old, new, reason = m.group(4), m.group(5), m.group(6), m.group(7), m.group(8)
    vhid = int(vhid_text) if vhid_text.isdigit() and len(vhid_text) <= 3 else 0
    checks = (("vhid", 1 <= vhid <= 255), ("interface", bool(INTERFACE.match(iface))), ("old state", old in STATES),
              ("new state", new in STATES), ("reason", clean_reason(reason) == reason))
    bad = [what for what, fine in checks if not fine]
    if not bad:
        return NodeEvent(m.group(1), int(m.group(2)), when, vhid, iface, old, new, reason)
    return NodeEvent(m.group(1), int(m.group(2)), when, vhid if 1 <= vhid <= 255 else 0,
                     iface if INTERFACE.match(iface) else UNKNOWN, old if old in STATES else UNKNOWN,
                     new if new in STATES else UNKNOWN, clean_reason(f"malformed line ({', '.join(bad)}): {reason}"),
                     malformed=True)


@dataclass(frozen=True)
class Transition:
    """One recorded transition, as the cluster's judgement reads it."""

    node: str
    old: str
    new: str
    reason: str
    time: datetime
    vhid: int = 0


@dataclass(frozen=True)
class Episode:
    """A master lost the vhid and took it back within one settle window: the end state equals the start state,
    but for `seconds` someone else held the addresses (or nobody did)."""

    node: str
    lost: datetime
    back: datetime
    reason: str
    holders: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return (self.back - self.lost).total_seconds()


def reverted_episodes(transitions: list[Transition], master: str) -> list[Episode]:
    """Each time `master` (the master before and after) left MASTER and came back, in time order."""
    episodes: list[Episode] = []
    lost: Transition | None = None
    holders: list[str] = []
    for t in sorted(transitions, key=lambda t: t.time):
        if t.node == master and t.old == "MASTER" and t.new != "MASTER" and lost is None:
            lost, holders = t, []
        elif lost is not None and t.node != master and t.new == "MASTER" and t.node not in holders:
            holders.append(t.node)
        elif lost is not None and t.node == master and t.new == "MASTER":
            episodes.append(Episode(master, lost.time, t.time, lost.reason, tuple(holders)))
            lost = None
    return episodes


SAME_LOSS = 2.0  # seconds: a node's vhids that lose MASTER this close together lost it in one event


def losses(transitions: list[Transition]) -> int:
    """How many times some node lost MASTER: a flapping cluster's count (a drill or a maintenance is two). A node
    carrying ten service IPs loses all ten at once (its link, its demotion): that is one loss, not ten."""
    groups: dict[str, tuple[datetime, set[int]]] = {}  # per node: when its current loss began, which vhids
    count = 0
    for t in sorted(transitions, key=lambda t: t.time):
        if t.old == "MASTER" and t.new != "MASTER":
            group = groups.get(t.node)
            if group is not None and (t.time - group[0]).total_seconds() <= SAME_LOSS and t.vhid not in group[1]:
                group[1].add(t.vhid)  # another of its service IPs in the same loss
            else:
                groups[t.node] = (t.time, {t.vhid})
                count += 1
    return count
