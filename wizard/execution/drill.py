"""The failure drill: stop CARP on the master as a crash would (net.inet.carp.allow=0: no demoted advertisement,
the backups wait the master-down interval), time the takeover, measure the outage of every service IP's address
against 3 x advbase + advskew/256, start CARP again, and check the failback.

The stop is recorded before it is made and undone in a `finally`; if the worker dies in between, the next Check
finds the record and starts CARP again there. (A planned move without loss is the handover: execution/handover.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import revisions
from ..carp import cluster as carp_cluster
from ..models import Drill, Step
from ..plan import CLUSTER_ROWS, ClusterOp
from ..ssh import SSHError
from .cluster_ops import OpFailed, Probe, begin, finish, gather, is_master, prober_session
from .run_context import RunContext
from .session import Transcript
from .waits import until

ROWS = [name for name, _ in CLUSTER_ROWS[ClusterOp.DRILL]]


@dataclass
class Takeover:
    master: str | None = None
    seconds: float | None = None


def skip_all(ctx: RunContext, why: str) -> None:
    for name in ROWS:
        ctx.recorder.skip(ctx.recorder.row(None, name), why)


def _stop(ctx: RunContext, master: str, record: Drill, probes: list[Probe]) -> float:
    """Stop CARP on the master after every address answered the prober once; returns when it was done."""
    row = begin(ctx, "drill-stop")
    probes[0].row = row
    transcript: Transcript = []
    session = ctx.sessions[master]
    # Recorded before the change: if this worker dies now, the next run finds and repairs it.
    Drill.objects.filter(pk=record.pk).update(demotion_pending=True)
    for probe in probes:
        probe.thread.start()
    for probe in probes:
        probe.start(started=True)
    t0 = time.monotonic()
    res = session.run(carp_cluster.allow_command(False), transcript)
    if not res.ok:
        raise OpFailed(f"{master}: {carp_cluster.allow_command(False)} failed: {res.error()}")
    prober = probes[0].session.name if probes[0].session else "none"
    finish(ctx, row, Step.Status.CHANGED, f"CARP stopped on {master}: every vhid INIT, no demoted advertisement "
           f"(prober: {prober}, {len(probes)} address{'es' if len(probes) != 1 else ''})", transcript)
    return t0


def _await_takeover(ctx: RunContext, backups: list[str], t0: float, probe: Probe) -> Takeover:
    row = begin(ctx, "drill-takeover")
    probe.row = row
    transcript: Transcript = []
    limit = carp_cluster.transition_deadline(ctx.advbase)
    new_master = until(lambda: next((b for b in backups if is_master(ctx, b, transcript)), None),
                       seconds=limit, every=0.1, stop=ctx.stop)
    if new_master is None:
        finish(ctx, row, Step.Status.FAILED, f"No backup became MASTER within {limit:g} s of demoting.",
                transcript[-len(backups):])
        return Takeover()
    seconds = time.monotonic() - t0
    finish(ctx, row, Step.Status.OK, f"{new_master} reported MASTER after {seconds:.2f} s", transcript[-1:])
    return Takeover(new_master, seconds)


def _restore(ctx: RunContext, master: str, record: Drill, probes: list[Probe]) -> bool:
    row = begin(ctx, "drill-restore")
    probes[0].row = row
    transcript: Transcript = []
    try:
        res = ctx.sessions[master].run(carp_cluster.allow_command(True), transcript)
        if not res.ok:
            raise OpFailed(f"{master}: {carp_cluster.allow_command(True)} failed: {res.error()}")
    except (SSHError, OpFailed) as e:
        finish(ctx, row, Step.Status.FAILED, f"{getattr(e, 'message', e)} The stop stays recorded: the next "
               f"run (Check) starts CARP again on {master}.", transcript)
        return False
    Drill.objects.filter(pk=record.pk).update(demotion_pending=False)
    finish(ctx, row, Step.Status.CHANGED, f"{master}: CARP started again (the kernel takes back its "
           "interface-down demotion)", transcript)
    return True


def _await_failback(ctx: RunContext, master: str) -> bool:
    row = begin(ctx, "drill-failback")
    transcript: Transcript = []
    t0 = time.monotonic()
    limit = carp_cluster.transition_deadline(ctx.advbase)
    if until(lambda: is_master(ctx, master, transcript), seconds=limit, every=0.2, stop=ctx.stop):
        finish(ctx, row, Step.Status.OK, f"{master} is MASTER again after {time.monotonic() - t0:.2f} s",
                transcript[-1:])
        return True
    finish(ctx, row, Step.Status.FAILED, f"{master} did not take the VIP back within {limit:g} s: is preempt on "
            "everywhere?", transcript[-1:])
    return False


def _fail_open_rows(ctx: RunContext, why: str) -> None:
    """The demotion or the takeover broke off: its row failed with the reason, a row not reached is skipped."""
    for name in ("drill-stop", "drill-takeover"):
        row = ctx.recorder.row(None, name)
        if row.status == Step.Status.RUNNING:
            finish(ctx, row, Step.Status.FAILED, why)
        elif row.status == Step.Status.PENDING:
            ctx.recorder.skip(row, "not run: " + why)


def drill(ctx: RunContext) -> bool:
    found, _ = gather(ctx, [])
    master = next((n.name for n in found if n.states == {"MASTER"}), None)
    if master is None:
        skip_all(ctx, "not run: no node is MASTER of every service IP")
        return False
    session = prober_session(ctx, found)
    hosts = [h for v in ctx.vips for h in v.hosts]
    probes = [Probe(session, h, ctx.recorder if i == 0 else None) for i, h in enumerate(hosts)]
    backups = [n.name for n in found if n.states == {"BACKUP"} and n.name in ctx.sessions]
    record = Drill.objects.create(cluster=ctx.cluster, run=ctx.run, master_before=master,
                                  probe=session.name if session else "", demoted=ctx.server(master))
    takeover = Takeover()
    try:
        t0 = _stop(ctx, master, record, probes)
        takeover = _await_takeover(ctx, backups, t0, probes[0])
    except (SSHError, OpFailed) as e:
        _fail_open_rows(ctx, getattr(e, "message", str(e)))
    finally:
        restored = _restore(ctx, master, record, probes)
    outages = [(p.vip, p.outage()) for p in probes]
    failback = _await_failback(ctx, master) if restored else False
    if not restored:
        ctx.recorder.skip(ctx.recorder.row(None, "drill-failback"), "not run: CARP could not be started again yet")
    ok = takeover.master is not None and restored and failback
    skew = ctx.targets[takeover.master].advskew if takeover.master else 100
    measured = [o for _, o in outages if o is not None]
    with revisions.change() as rev:
        Drill.objects.filter(pk=record.pk).update(
            status=Drill.Status.OK if ok else Drill.Status.FAILED, master_during=takeover.master or "",
            takeover_s=takeover.seconds, outage_s=max(measured) if measured else None,
            bound_s=carp_cluster.master_down_bound(ctx.advbase, skew), failback_ok=failback,
            probes=[{"address": a, "outage_s": None if o is None else round(o, 2)} for a, o in outages],
            message="; ".join(p.error for p in probes if p.error))
        revisions.touch_cluster(ctx.cluster.pk, rev)
    return ok
