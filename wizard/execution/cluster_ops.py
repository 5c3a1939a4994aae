"""Cluster-wide operations over a run's open sessions: Check (with repair), maintenance, the failover drill.

The decisions come from the pure carp layer (wizard.carp.cluster); this module sequences commands across
nodes, waits for CARP through `until`, and records rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.utils import timezone

from .. import revisions
from ..carp import cluster as carp_cluster
from ..carp import facts
from ..carp.cluster import Diagnosis, NodeFacts
from ..models import Cluster, Server, ServiceIP, Step
from ..ssh import SSHError
from .run_context import RunContext
from .session import Session, Transcript
from .waits import until


class OpFailed(Exception):
    """A cluster operation could not go on; the message is for the admin."""


def begin(ctx: RunContext, name: str) -> Step:
    row = ctx.recorder.row(None, name)
    ctx.recorder.start(row)
    return row


def finish(ctx: RunContext, row: Step, status: str, message: str, transcript: Transcript | None = None) -> None:
    ctx.recorder.finish(row, status, message, transcript)


def _node_facts(ctx: RunContext, server: Server, transcript: Transcript) -> NodeFacts:
    session = ctx.sessions.get(server.name)
    if session is None:
        return NodeFacts.unreachable(server.name, "no SSH session", server.maintenance)
    target = ctx.targets[server.name]
    try:
        values, _ = session.read_all(carp_cluster.reads(target), transcript)
    except SSHError as e:
        return NodeFacts.unreachable(server.name, e.message, server.maintenance)
    return carp_cluster.node_facts(target, values, server.maintenance)


def prober_session(ctx: RunContext, found: list[NodeFacts]) -> Session | None:
    name = carp_cluster.pick_prober([s.name for s in ctx.probes], found, set(ctx.sessions))
    return ctx.sessions.get(name) if name else None


Answers = dict[str, bool | None]  # by Vip.key: every address of the service IP answers the prober (None: not asked)


def gather(ctx: RunContext, transcript: Transcript) -> tuple[list[NodeFacts], Answers]:
    """Every node's CARP facts, read on all nodes at once (one round trip each, so the look is close to a
    snapshot), and whether each service IP answers a ping from the prober (one round trip for all)."""
    parts: list[Transcript] = [[] for _ in ctx.nodes]
    if len(ctx.nodes) > 1:
        with ThreadPoolExecutor(max_workers=len(ctx.nodes)) as pool:
            found = list(pool.map(lambda i: _node_facts(ctx, ctx.nodes[i], parts[i]), range(len(ctx.nodes))))
    else:
        found = [_node_facts(ctx, server, parts[0]) for server in ctx.nodes]
    for part in parts:
        transcript.extend(part)
    prober = prober_session(ctx, found)
    if prober is None or not ctx.vips:
        return found, {v.key: None for v in ctx.vips}
    pings = [(v.key, facts.Ping(h, 1)) for v in ctx.vips for h in v.hosts]
    try:
        values, _ = prober.read_all([p for _, p in pings], transcript)
    except SSHError:
        return found, {v.key: None for v in ctx.vips}
    answers: Answers = {}
    for (key, _), answered in zip(pings, values, strict=True):
        answers[key] = bool(answered) and answers.get(key, True) is not False
    return found, answers


def set_demotion(session: Session, current: int, wanted: int, transcript: Transcript) -> bool:
    """Write the demotion difference; False when nothing needed writing."""
    command = carp_cluster.set_demotion_command(current, wanted)
    if command is None:
        return False
    res = session.run(command, transcript)
    if not res.ok:
        raise OpFailed(f"{session.name}: {command} failed: {res.error()}")
    return True


def restore_allow(ctx: RunContext, found: list[NodeFacts], transcript: Transcript) -> list[str]:
    """Start CARP again where a failure drill stopped it and could not restore it (its record says which node); a
    node an admin turned off by hand is left alone (Check says so)."""
    stopped = set(ctx.cluster.drills.filter(demotion_pending=True).values_list("demoted__name", flat=True))
    repaired = []
    for node in found:
        session = ctx.sessions.get(node.name)
        if node.name in stopped and node.allow == 0 and session is not None:
            res = session.run(carp_cluster.allow_command(True), transcript)
            if not res.ok:
                raise OpFailed(f"{node.name}: {carp_cluster.allow_command(True)} failed: {res.error()}")
            repaired.append(f"{node.name}: CARP started again (net.inet.carp.allow 0 -> 1)")
    return repaired


def repair_demotions(ctx: RunContext, found: list[NodeFacts], transcript: Transcript) -> list[str]:
    """Undo what a drill or send errors left raised (from a look's demotion values); keep maintenance nodes at
    their demotion."""
    ctx.cluster.drills.filter(demotion_pending=True).update(demotion_pending=False)
    maintenance = {s.name: s.maintenance for s in ctx.nodes}
    repaired = []
    for node in found:
        session = ctx.sessions.get(node.name)
        if session is None or node.demotion is None:
            continue
        wanted = carp_cluster.wanted_demotion(maintenance[node.name])
        if set_demotion(session, node.demotion, wanted, transcript):
            repaired.append(f"{node.name}: demotion {node.demotion} -> {wanted}")
    return repaired


Look = tuple[list[NodeFacts], Answers, Diagnosis, Transcript]


def _observe_until_settled(ctx: RunContext, expect_home: bool, first: Look | None = None) -> Look:
    """Look at the cluster until CARP has settled (or CARP's transition deadline passes); `first` is a look
    already taken."""
    home = next((s.name for s in ctx.nodes if s.preferred_master and not s.maintenance), None)
    in_maintenance = {s.name for s in ctx.nodes if s.maintenance}
    seen: dict[str, Look] = {}

    def look() -> bool:
        if first is not None and "last" not in seen:
            seen["last"] = first
        else:
            transcript: Transcript = []
            found, answers = gather(ctx, transcript)
            seen["last"] = (found, answers, carp_cluster.diagnose(found, ctx.vips, answers), transcript)
        return carp_cluster.settled(seen["last"][2], home, expect_home, in_maintenance)

    until(look, seconds=carp_cluster.transition_deadline(ctx.advbase), every=0.5, stop=ctx.stop)
    return seen["last"]


def _store_observation(ctx: RunContext, found: list[NodeFacts], diagnosis: Diagnosis, lines: list[str]) -> None:
    with revisions.change() as rev:
        for n in found:
            states = {f.state for f in n.vips.values()}
            skews = {f.advskew for f in n.vips.values()}
            state = "unreachable" if not n.reachable else (states.pop() or "") if len(states) == 1 else "mixed"
            Server.objects.filter(cluster=ctx.cluster, name=n.name).update(
                carp_state=state, carp_advskew=skews.pop() if len(skews) == 1 else None, demotion=n.demotion)
        for vip in ctx.vips:
            shown = ", ".join(f"{n.name} {n.vip(vip.key).state or ('unreachable' if not n.reachable else 'none')}"
                              for n in found)
            ServiceIP.objects.filter(pk=int(vip.key)).update(state=shown[:200])
        Cluster.objects.filter(pk=ctx.cluster.pk).update(diagnosis="\n".join(lines), healthy=diagnosis.healthy,
                                                         checked_at=timezone.now(), rev=rev)


def check(ctx: RunContext, row: Step) -> bool:
    """One MASTER, the rest BACKUP, the VIP answers; repair leftover demotions; name the cause otherwise."""
    first_transcript: Transcript = []
    found, answers = gather(ctx, first_transcript)
    repair_transcript: Transcript = []
    repaired = restore_allow(ctx, found, repair_transcript)
    if repaired:  # the kernel took its interface-down demotion back: look again before judging demotions
        found, answers = gather(ctx, repair_transcript)
    repaired += repair_demotions(ctx, found, repair_transcript)
    first = None if repaired else (found, answers, carp_cluster.diagnose(found, ctx.vips, answers),
                                   first_transcript)
    expect_home = bool(repaired) or ctx.plan.maintenance is not None
    found, answers, diagnosis, transcript = _observe_until_settled(ctx, expect_home, first)
    lines = [*(f"Repaired {r}." for r in repaired), *diagnosis.problems]
    _store_observation(ctx, found, diagnosis, lines)
    states = ", ".join(f"{n.name} {n.shown_state}" for n in found)
    transcript = transcript if first is not None else first_transcript + repair_transcript + transcript
    if diagnosis.healthy:
        heard = list(answers.values())
        vip = ("answers" if all(heard) else "not probed" if all(a is None for a in heard) else
               "does not answer everywhere")
        finish(ctx, row, Step.Status.CHANGED if repaired else Step.Status.OK,
               f"{states}; VIP {vip}. " + " ".join(lines), transcript)
        return True
    finish(ctx, row, Step.Status.FAILED, f"{states}. " + " ".join(lines), transcript)
    return False


def maintenance(ctx: RunContext, row: Step) -> bool:
    """Demote the run's target node (maintenance on) or undo it (off)."""
    target, on = ctx.run.target, bool(ctx.plan.maintenance)
    session = ctx.sessions.get(target.name) if target else None
    if target is None or session is None:
        finish(ctx, row, Step.Status.FAILED, "The maintenance node is unreachable.")
        return False
    transcript: Transcript = []
    current = session.read(facts.SysctlInt(facts.DEMOTION), transcript)
    if current is None:
        finish(ctx, row, Step.Status.FAILED, f"{target.name}: carp is not loaded.", transcript)
        return False
    wanted = carp_cluster.wanted_demotion(on)
    changed = set_demotion(session, current, wanted, transcript)
    with revisions.change() as rev:
        Server.objects.filter(pk=target.pk).update(maintenance=on)
        revisions.touch_cluster(ctx.cluster.pk, rev)
    for server in ctx.servers:  # the check that follows reads it
        if server.pk == target.pk:
            server.maintenance = on
    finish(ctx, row, Step.Status.CHANGED if changed else Step.Status.OK,
            f"{target.name} {'in' if on else 'out of'} maintenance (demotion {wanted}).", transcript)
    return True


def is_master(ctx: RunContext, name: str, transcript: Transcript) -> bool:
    """The node is MASTER of every service IP."""
    vips = ctx.vips
    interfaces = ctx.sessions[name].read(facts.Ifconfig(), transcript)
    return bool(vips) and all(carp_cluster.state_of(interfaces, v) == "MASTER" for v in vips)


class Pinger:
    """The drill's and the handover's measuring instrument: pings one address from the prober in a thread,
    `count` times every `interval` s. `live`, when set, is handed each line as it comes (the row on show)."""

    def __init__(self, session: Session, address: str, count: int, interval: float) -> None:
        self.session, self.address, self.count, self.interval = session, address, count, interval
        self.text, self.error = "", ""
        self.replied = False
        self.last_seq: int | None = None  # the newest reply's icmp_seq
        self.stop_seq: int | None = None  # the newest reply's when the change was made (mark)
        self.live: Callable[[str], None] | None = None
        self._settled = threading.Event()  # a first reply came, or the ping is over
        self._thread = threading.Thread(target=self._ping, daemon=True)

    def _on_line(self, line: str) -> None:
        seq = carp_cluster.reply_seq(line)
        if seq is not None:
            self.last_seq, self.replied = seq, True
            self._settled.set()
        if self.live is not None:
            self.live(line)

    def _ping(self) -> None:
        try:
            self.text = self.session.run(carp_cluster.probe_command(self.address, self.count, self.interval), [],
                                         timeout=self.count * self.interval + 30, on_line=self._on_line).stdout
        except SSHError as e:
            self.error = e.message
        finally:
            self._settled.set()

    def start(self) -> None:
        self._thread.start()

    def first_reply(self, wait: float = carp_cluster.PROBE_FIRST_REPLY) -> bool:
        """The address answered once within `wait` s: only then does a measurement cover what comes next (a
        ping that started late would see the end of an outage and call it short)."""
        self._settled.wait(wait)
        return self.replied

    def finish(self) -> None:
        self._thread.join(self.count * self.interval + 35)

    def mark(self) -> None:
        """The change was made now: the outage is measured from here (drill_outage)."""
        self.stop_seq = self.last_seq

    def outage(self, needed: float) -> tuple[float | None, str]:
        """The longest run of missing replies in seconds, or None and why it cannot be told."""
        self.finish()
        return carp_cluster.drill_outage(self.text, self.interval, self.stop_seq, needed)

    def figures(self) -> dict[str, object]:
        """What a drill record keeps of the address: pings sent and lost (None: not measured, and why)."""
        self.finish()
        counts = carp_cluster.ping_counts(self.text)
        if counts is None:
            return {"address": self.address, "sent": None, "lost": None, "error": self.error or "no statistics"}
        return {"address": self.address, "sent": counts[0], "lost": counts[0] - counts[1]}


def silent(pingers: list[Pinger]) -> str | None:
    """Start every ping and wait for each address's first reply: None when all answered, else who did not."""
    for p in pingers:
        p.start()
    quiet = [p for p in pingers if not p.first_reply()]
    if not quiet:
        return None
    prober = quiet[0].session.name
    why = "; ".join(f"{p.address} ({p.error})" if p.error else p.address for p in quiet)
    return (f"No reply from {why} to a ping from {prober} within {carp_cluster.PROBE_FIRST_REPLY:g} s, so what "
            "a client loses could not be measured")
