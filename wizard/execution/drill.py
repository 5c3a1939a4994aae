"""The failover drill: demote the master, time the takeover, measure what a client saw, restore, fail back.

The demotion is recorded before it is made and undone in a `finally`; if the worker dies in between, the
next Check finds the record and repairs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import revisions
from ..carp import cluster as carp_cluster
from ..carp import facts
from ..models import Drill, Step
from ..plan import CLUSTER_ROWS, ClusterOp
from ..ssh import SSHError
from .cluster_ops import OpFailed, Probe, begin, finish, gather, is_master, prober_session, set_demotion
from .context import RunContext
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


def _demote(ctx: RunContext, master: str, record: Drill, probe: Probe) -> float:
    """Demote the master by DEMOTION after the prober saw the VIP answer; returns when it was done."""
    row = begin(ctx, "drill-demote")
    probe.row = row
    transcript: Transcript = []
    session = ctx.sessions[master]
    current = session.read(facts.SysctlInt(facts.DEMOTION), transcript) or 0
    # Recorded before the change: if this worker dies now, the next run finds and repairs it.
    Drill.objects.filter(pk=record.pk).update(demotion_pending=True)
    probe.start()
    t0 = time.monotonic()
    set_demotion(session, current, current + carp_cluster.DEMOTION, transcript)
    prober = probe.session.name if probe.session else "none"
    finish(ctx, row, Step.Status.CHANGED, f"{master} demoted by {carp_cluster.DEMOTION} (prober: {prober})",
            transcript)
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


def _restore(ctx: RunContext, master: str, record: Drill, probe: Probe) -> bool:
    row = begin(ctx, "drill-restore")
    probe.row = row
    transcript: Transcript = []
    wanted = carp_cluster.wanted_demotion(ctx.server(master).maintenance)
    try:
        session = ctx.sessions[master]
        set_demotion(session, session.read(facts.SysctlInt(facts.DEMOTION), transcript) or 0, wanted, transcript)
    except (SSHError, OpFailed) as e:
        finish(ctx, row, Step.Status.FAILED, f"{getattr(e, 'message', e)} The demotion stays recorded: the next "
                f"run (Check) restores it on {master}.", transcript)
        return False
    Drill.objects.filter(pk=record.pk).update(demotion_pending=False)
    finish(ctx, row, Step.Status.CHANGED, f"{master}: demotion back to {wanted}", transcript)
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
    for name in ("drill-demote", "drill-takeover"):
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
    probe = Probe(prober_session(ctx, found), ctx.vips[0].hosts[0], ctx.recorder)
    backups = [n.name for n in found if n.states == {"BACKUP"} and n.name in ctx.sessions]
    record = Drill.objects.create(cluster=ctx.cluster, run=ctx.run, master_before=master,
                                  probe=probe.session.name if probe.session else "", demoted=ctx.server(master))
    takeover = Takeover()
    try:
        t0 = _demote(ctx, master, record, probe)
        takeover = _await_takeover(ctx, backups, t0, probe)
    except (SSHError, OpFailed) as e:
        _fail_open_rows(ctx, getattr(e, "message", str(e)))
    finally:
        restored = _restore(ctx, master, record, probe)
    outage = probe.outage()
    failback = _await_failback(ctx, master) if restored else False
    if not restored:
        ctx.recorder.skip(ctx.recorder.row(None, "drill-failback"), "not run: the demotion could not be restored yet")
    ok = takeover.master is not None and restored and failback
    skew = ctx.targets[takeover.master].advskew if takeover.master else 100
    with revisions.change() as rev:
        Drill.objects.filter(pk=record.pk).update(
            status=Drill.Status.OK if ok else Drill.Status.FAILED, master_during=takeover.master or "",
            takeover_s=takeover.seconds, outage_s=outage,
            bound_s=carp_cluster.master_down_bound(ctx.advbase, skew), failback_ok=failback,
            message=probe.error)
        revisions.touch_cluster(ctx.cluster.pk, rev)
    return ok
