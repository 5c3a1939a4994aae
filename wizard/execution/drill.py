"""The failure drill: stop CARP on the master as a crash would (net.inet.carp.allow=0: no demoted advertisement,
the backups wait the master-down interval), time the takeover, measure the outage of every service IP's address
against 3 x advbase + advskew/256, start CARP again, and check the failback.

The prober's pings start first, and nothing is stopped until every address has answered one: a ping that began
late would see only the end of the outage and call it short. The stop is recorded before it is made and undone
in a `finally`; if the worker dies in between, the next Check finds the record and starts CARP again there. (A
planned move without loss is the handover: execution/handover.)"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import revisions
from ..carp import cluster as carp_cluster
from ..models import Drill, Step
from ..plan import CLUSTER_ROWS, ClusterOp
from ..ssh import SSHError
from .cluster_ops import OpFailed, Pinger, begin, finish, gather, is_master, prober_session, silent
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


def _show(ctx: RunContext, pingers: list[Pinger], row: Step) -> None:
    """The first address's pings appear live on the row that runs."""
    if pingers:
        pingers[0].live = lambda line: ctx.recorder.live(row, line)


def _measurable(ctx: RunContext, master: str, record: Drill, pingers: list[Pinger]) -> str | None:
    """Start the prober's pings (the drill-stop row shows them); None once every address answered, else why the
    drill stops here, before anything was changed."""
    _show(ctx, pingers, begin(ctx, "drill-stop"))
    # Recorded before the change: if this worker dies from here on, the next Check finds and repairs it (where CARP
    # still runs, that repair finds nothing to do).
    Drill.objects.filter(pk=record.pk).update(demotion_pending=True)
    why = silent(pingers)
    if why is None:
        return None
    Drill.objects.filter(pk=record.pk).update(demotion_pending=False)
    return f"{why}: CARP was not stopped on {master}."


def _stop(ctx: RunContext, master: str, pingers: list[Pinger]) -> float:
    """Stop CARP on the master (every address already answered the prober); returns when it was done."""
    row = ctx.recorder.row(None, "drill-stop")
    transcript: Transcript = []
    t0 = time.monotonic()
    res = ctx.sessions[master].run(carp_cluster.allow_command(False), transcript)
    for p in pingers:
        p.mark()
    if not res.ok:
        raise OpFailed(f"{master}: {carp_cluster.allow_command(False)} failed: {res.error()}")
    prober = pingers[0].session.name if pingers else "none"
    finish(ctx, row, Step.Status.CHANGED, f"CARP stopped on {master}: every vhid INIT, no demoted advertisement "
           f"(prober: {prober}, {len(pingers)} address{'es' if len(pingers) != 1 else ''})", transcript)
    return t0


def _await_takeover(ctx: RunContext, backups: list[str], t0: float, pingers: list[Pinger]) -> Takeover:
    row = begin(ctx, "drill-takeover")
    _show(ctx, pingers, row)
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


def _restore(ctx: RunContext, master: str, record: Drill, pingers: list[Pinger]) -> bool:
    row = begin(ctx, "drill-restore")
    _show(ctx, pingers, row)
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


def _await_failback(ctx: RunContext, master: str, pingers: list[Pinger]) -> bool:
    row = begin(ctx, "drill-failback")
    _show(ctx, pingers, row)
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


def _record(ctx: RunContext, record: Drill, takeover: Takeover, pingers: list[Pinger], failback: bool,
            ok: bool, message: str, stopped: bool = True) -> None:
    """The drill's figures: the takeover, each address's outage and counts, and the bound it is held to (none
    when CARP was not stopped)."""
    skew = ctx.targets[takeover.master].advskew if takeover.master else carp_cluster.MAX_SKEW
    bound = carp_cluster.master_down_bound(ctx.advbase, skew) if stopped else None
    outages = [(p, *p.outage(bound or 0.0)) for p in pingers]
    measured = [o for _, o, _ in outages if o is not None]
    probes = [{**p.figures(), "outage_s": None if o is None else round(o, 2), **({"why": why} if why else {})}
              for p, o, why in outages]
    unmeasured = dict.fromkeys(why for _, _, why in outages if why and takeover.master)  # once each, in order
    notes = [message, *(p.error for p in pingers), *unmeasured]
    with revisions.change() as rev:
        Drill.objects.filter(pk=record.pk).update(
            status=Drill.Status.OK if ok else Drill.Status.FAILED, master_during=takeover.master or "",
            takeover_s=takeover.seconds, outage_s=max(measured) if measured else None, bound_s=bound,
            failback_ok=failback, probes=probes, message="; ".join(n for n in notes if n))
        revisions.touch_cluster(ctx.cluster.pk, rev)


def drill(ctx: RunContext) -> bool:
    found, _ = gather(ctx, [])
    master = next((n.name for n in found if n.states == {"MASTER"}), None)
    if master is None:
        skip_all(ctx, "not run: no node is MASTER of every service IP")
        return False
    session = prober_session(ctx, found)
    pingers = [Pinger(session, h, carp_cluster.probe_count(ctx.advbase), carp_cluster.PROBE_INTERVAL)
               for v in ctx.vips for h in v.hosts] if session else []
    backups = [n.name for n in found if n.states == {"BACKUP"} and n.name in ctx.sessions]
    record = Drill.objects.create(cluster=ctx.cluster, run=ctx.run, master_before=master,
                                  probe=session.name if session else "", demoted=ctx.server(master))
    why = _measurable(ctx, master, record, pingers)
    if why is not None:
        _fail_open_rows(ctx, why)
        for name in ("drill-restore", "drill-failback"):
            ctx.recorder.skip(ctx.recorder.row(None, name), "not run: CARP was not stopped")
        _record(ctx, record, Takeover(), [], False, False, why, stopped=False)  # silent pings measured nothing
        return False
    takeover = Takeover()
    try:
        t0 = _stop(ctx, master, pingers)
        takeover = _await_takeover(ctx, backups, t0, pingers)
    except (SSHError, OpFailed) as e:
        _fail_open_rows(ctx, getattr(e, "message", str(e)))
    finally:
        restored = _restore(ctx, master, record, pingers)
    failback = _await_failback(ctx, master, pingers) if restored else False
    if not restored:
        ctx.recorder.skip(ctx.recorder.row(None, "drill-failback"), "not run: CARP could not be started again yet")
    ok = takeover.master is not None and restored and failback
    _record(ctx, record, takeover, pingers, failback, ok, "")
    return ok
