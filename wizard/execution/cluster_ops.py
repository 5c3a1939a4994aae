"""Cluster-wide operations over a run's open sessions: Check (with repair), maintenance, the failover drill.

The decisions come from the pure carp layer (wizard.carp.cluster); this module sequences commands across
nodes, waits for CARP through `until`, and records rows.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.utils import timezone

from .. import revisions
from ..carp import cluster as carp_cluster
from ..carp import facts
from ..carp.cluster import Diagnosis, NodeFacts
from ..models import Cluster, Server, ServiceIP, Step
from ..ssh import SSHError
from .recorder import Recorder
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


class Probe:
    """The drill's prober: pings the VIP every 100 ms in a thread; `answered` is set at the first reply."""

    def __init__(self, session: Session | None, vip: str, recorder: Recorder | None = None) -> None:
        self.session, self.vip, self.recorder = session, vip, recorder
        self.answered = threading.Event()
        self.text, self.error = "", ""
        self.thread = threading.Thread(target=self._ping, daemon=True)
        self.row: Step | None = None  # the drill row that shows the pings while it runs

    def _on_line(self, line: str) -> None:
        if carp_cluster.is_reply(line):
            self.answered.set()
        if self.recorder is not None and self.row is not None:
            self.recorder.live(self.row, line)

    def _ping(self) -> None:
        if self.session is None:
            return
        seconds = carp_cluster.PROBE_COUNT * carp_cluster.PROBE_INTERVAL
        try:
            self.text = self.session.run(carp_cluster.probe_command(self.vip), [], timeout=seconds + 20,
                                         on_line=self._on_line).stdout
        except SSHError as e:
            self.error = e.message
        finally:
            self.answered.set()  # nothing more will come: whoever waits for a reply stops waiting

    def start(self, wait_for_reply: float = carp_cluster.PROBE_FIRST_REPLY, started: bool = False) -> None:
        """Start pinging (unless `started`) and wait until the VIP answered once, so the window covers the
        takeover."""
        if not started:
            self.thread.start()
        if self.session is not None:
            self.answered.wait(wait_for_reply)

    def outage(self) -> float | None:
        seconds = carp_cluster.PROBE_COUNT * carp_cluster.PROBE_INTERVAL
        self.thread.join(seconds + 25)
        if not self.text:
            return None
        return carp_cluster.outage_from_ping(self.text, carp_cluster.PROBE_INTERVAL)[0]
