"""A run end to end: claim it, plan its rows, run every server's steps in parallel (one SSH connection each),
then the cluster operations; stop it at CARPWEB_RUN_TIMEOUT. Connections are leased from the worker's pool
(wizard.sshpool) and given back at the end. What a finished run changes elsewhere (cluster
flags, the audit log, drift) is services.runs' business; what a step means is the carp layer's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from .. import crypto, revisions
from ..models import Run, Server, Step
from ..plan import ClusterOp, run_plan, targets
from ..ssh import SSHError
from . import cluster_ops, drill, handover
from .connect import Connector, ssh_lease
from .node import connect, execute_stage
from .reaper import heartbeat
from .recorder import Recorder
from .run_context import RunContext
from .slots import Slots
from .waits import Stopped

log = logging.getLogger(__name__)
STOP_GRACE = 10.0  # seconds the parts of a stopped run get to record how they ended
STAGE_BLOCKED = ("not run: a node did not come through the steps before these; the service IP goes on every "
                 "node or none")
MAX_PARALLEL_SERVERS = 32
# Kinds that look at what Configure put on the nodes rather than put it there.
OBSERVING = (Run.Kind.CHECK, Run.Kind.DRILL, Run.Kind.MAINTENANCE_ON, Run.Kind.MAINTENANCE_OFF, Run.Kind.HANDOVER)
SLOTS = Slots(settings.CARPWEB_SSH_MAX_CONNECTIONS)  # this worker process's SSH connections, shared by its runs


def claim(run_id: int) -> bool:
    """Only the first worker to flip pending -> running executes a run: a redelivered or duplicated message
    never runs it twice."""
    now = timezone.now()
    with revisions.change() as rev:
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.PENDING).update(
            status=Run.Status.RUNNING, started=now, heartbeat=now)
        if claimed:
            revisions.touch_run(run_id, rev)
    return bool(claimed)


def _context(run: Run, connector: Connector) -> RunContext:
    cluster = run.cluster
    servers = list(cluster.servers.all())
    sips = list(cluster.service_ips.all())
    if run.kind in OBSERVING:  # a service IP not (or no longer) on the nodes is not looked for
        sips = [s for s in sips if s.configured] or sips
    passwords = {str(sip.pk): crypto.decrypt(sip.password_enc) for sip in sips}
    recorder = Recorder(run, [*passwords.values(), *[crypto.decrypt(s.secret_enc) for s in servers]])
    stamp = (run.started or timezone.now()).strftime("%Y%m%dT%H%M%S")
    found = targets(cluster, servers, stamp, sips)
    vips = list(next(iter(found.values())).vips) if found else []
    return RunContext(run, cluster, run_plan(run, vips), servers, found, recorder, connector, passwords)


def _in_thread(work: Callable[[], bool]) -> bool:
    close_old_connections()
    try:
        return work()
    except Stopped:
        return False
    finally:
        connection.close()


def _nodes(ctx: RunContext, pool: ThreadPoolExecutor) -> bool:
    """Connect every server, then run the plan's stages on every CARP node: each stage in parallel; the first on
    every node that connected, a later one only when every node came through the ones before (else its rows
    are skipped everywhere, with the reason)."""
    connected = dict(zip(ctx.servers, pool.map(lambda s: _in_thread(lambda: connect(ctx, s) is not None),
                                               ctx.servers), strict=True))
    nodes = [s for s in ctx.nodes if connected[s]]
    ok = all(connected[s] for s in ctx.nodes)
    for i, stage in enumerate(ctx.plan.stages):
        if i > 0 and not ok:
            for server in nodes:
                ctx.recorder.skip_pending(server, STAGE_BLOCKED)
            return False
        results = list(pool.map(lambda s, steps=stage: _in_thread(lambda: execute_stage(ctx, s, steps)), nodes))
        ok = ok and all(results)
    return ok


def _cluster_op(ctx: RunContext, op: ClusterOp, node_ok: bool, healthy: bool) -> bool:
    if op == ClusterOp.DRILL:
        if healthy:
            return drill.drill(ctx)
        drill.skip_all(ctx, "not run: the cluster is not healthy")
        return False
    if op == ClusterOp.HANDOVER:
        return handover.handover(ctx)
    row = ctx.recorder.row(None, op.value)
    if op == ClusterOp.CHECK and not node_ok:
        ctx.recorder.skip(row, "not run: a node step failed")
        return False
    ctx.recorder.start(row)
    try:
        return cluster_ops.check(ctx, row) if op == ClusterOp.CHECK else cluster_ops.maintenance(ctx, row)
    except (SSHError, cluster_ops.OpFailed) as e:
        ctx.recorder.finish(row, Step.Status.FAILED, getattr(e, "message", str(e)))
        return False


def _body(ctx: RunContext) -> None:
    """Every server's steps in parallel, then the cluster operations in order."""
    close_old_connections()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_SERVERS, len(ctx.servers)))) as pool:
            node_ok = _nodes(ctx, pool)
        healthy = True
        for op in ctx.plan.cluster_ops:
            healthy = _cluster_op(ctx, op, node_ok, healthy)
    except Stopped:
        pass
    finally:
        connection.close()


def _execute(ctx: RunContext) -> tuple[bool, str]:
    """The body in its own thread, stopped at CARPWEB_RUN_TIMEOUT: (timed out, internal error)."""
    body_pool = ThreadPoolExecutor(max_workers=1)
    try:
        body = body_pool.submit(_body, ctx)
        timed_out = not wait([body], timeout=settings.CARPWEB_RUN_TIMEOUT).done
        if timed_out:
            ctx.stop.set()
        _close_sessions(ctx, aborted=timed_out)
        wait([body], timeout=STOP_GRACE)  # the stopped parts record how they ended
    finally:
        body_pool.shutdown(wait=False)
    failure = body.exception() if body.done() else None
    if failure is None:
        return timed_out, ""
    log.error("run %s failed internally", ctx.run.pk, exc_info=failure)
    return timed_out, f"{type(failure).__name__}: {failure}"


def _close_sessions(ctx: RunContext, aborted: bool) -> None:
    for session in list(ctx.sessions.values()):
        if aborted:
            session.abort()  # also ends any command still waiting on a server
        else:
            session.close()  # a warm connection goes back to the pool


def _finish(ctx: RunContext, timed_out: bool, error: str = "") -> None:
    run, limit = ctx.run, settings.CARPWEB_RUN_TIMEOUT
    for row in ctx.recorder.unfinished():
        ctx.recorder.skip(row, "not finished: the run's time limit was reached" if timed_out else
                          "not finished: " + (error or "the run ended"))
    failed = [r for r in ctx.recorder.rows.values() if r.status == Step.Status.FAILED]
    changed = sum(r.status == Step.Status.CHANGED for r in ctx.recorder.rows.values())
    warned = sorted({r.where for r in ctx.recorder.rows.values() if r.status == Step.Status.WARNING})
    if timed_out:
        summary = f"stopped: the run took longer than CARPWEB_RUN_TIMEOUT ({limit:g} s)"
    elif error:
        summary = f"stopped by an internal error: {error}"
    elif failed:
        summary = f"{len(failed)} step(s) failed on {', '.join(sorted({r.where for r in failed}))}"
    else:
        summary = f"{changed} change(s) made" if changed else "nothing to change"
        if warned:
            summary += f"; a warning on {', '.join(warned)}: read its row"
    status = Run.Status.FAILED if timed_out or error or failed else Run.Status.OK
    # Only a run still running is finished here: the reaper may have declared it interrupted meanwhile.
    with revisions.change() as rev:
        if Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(status=status, summary=summary,
                                                                           finished=timezone.now()):
            revisions.touch_run(run, rev)
    run.refresh_from_db()


@dataclass(frozen=True)
class Executed:
    """A finished run, and what the service records about it beyond its rows."""

    run: Run
    hostkey_mismatches: list[tuple[Server, str]]


def run_execute(run_id: int, connector: Connector = ssh_lease) -> Executed | None:
    """Execute a pending run; None when another worker claimed it first. Safe to run again after an
    interruption: every step is idempotent."""
    if not claim(run_id):
        return None
    run = Run.objects.select_related("cluster", "target").get(pk=run_id)
    ctx = _context(run, connector)
    ctx.recorder.plan(ctx.servers, [(s.phase, s.name, s.title) for s in ctx.plan.node_steps],
                      ctx.plan.cluster_rows)
    with heartbeat(run_id), SLOTS.hold(len(ctx.servers), settings.CARPWEB_RUN_TIMEOUT) as free:
        if free:
            timed_out, error = _execute(ctx)
        else:
            timed_out, error = False, (f"no SSH connection came free in this worker within "
                                       f"{settings.CARPWEB_RUN_TIMEOUT:g} s (CARPWEB_SSH_MAX_CONNECTIONS="
                                       f"{SLOTS.limit})")
    _finish(ctx, timed_out, error)
    log.info("run %s %s on cluster %s: %s", run.pk, run.kind, run.cluster.name, run.status)
    return Executed(run, ctx.hostkey_mismatches)
