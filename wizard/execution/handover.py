"""The planned handover: every service IP from its master to a named node by demotion, while one prober pings
each address every 10 ms; what each address lost is recorded.

Demotion is how FreeBSD hands over without a gap: the demoted master advertises a longer interval, and a
preempting backup takes over at once on hearing it (ip_carp.c: "preempting a slower master"), so the goal is 0
lost probes. The nodes given up stay in maintenance (demotion 240) until an admin ends it; preempt then brings
the service IPs back to the preferred master.
"""

from __future__ import annotations

import time

from .. import revisions
from ..carp import cluster as carp_cluster
from ..carp import facts
from ..models import Drill, Server, Step
from ..ssh import SSHError
from .cluster_ops import OpFailed, Pinger, begin, finish, gather, is_master, set_demotion, silent
from .run_context import RunContext
from .session import Session, Transcript
from .waits import until

INTERVAL = 0.01  # seconds between probes of one address
COUNT = 500  # 5 s of probes: the demotion, the takeover and a few seconds after


def prober_for(ctx: RunContext, master: str, target: str) -> Session | None:
    """A probe server; else a node that is neither the new master (it would answer itself) nor the old one; else
    the old master (its pings leave it once it is BACKUP)."""
    order = [s.name for s in ctx.probes] + [s.name for s in ctx.nodes if s.name not in (master, target)] + [master]
    return next((ctx.sessions[n] for n in order if n in ctx.sessions), None)


def _step_back(ctx: RunContext, target: Server, transcript: Transcript) -> list[str]:
    """Every node but the named one goes into maintenance (demotion 240); the named one is not held back."""
    given_up = []
    for node in ctx.nodes:
        session = ctx.sessions.get(node.name)
        if session is None:
            continue
        current = session.read(facts.SysctlInt(facts.DEMOTION), transcript) or 0
        set_demotion(session, current, carp_cluster.wanted_demotion(node.pk != target.pk), transcript)
        with revisions.change() as rev:
            Server.objects.filter(pk=node.pk).update(maintenance=node.pk != target.pk)
            revisions.touch_cluster(ctx.cluster.pk, rev)
        node.maintenance = node.pk != target.pk
        if node.maintenance:
            given_up.append(node.name)
    return given_up


def handover(ctx: RunContext) -> bool:
    row = begin(ctx, "handover")
    target = ctx.run.target
    transcript: Transcript = []
    found, _ = gather(ctx, transcript)
    master = next((n.name for n in found if n.states == {"MASTER"}), None)
    if target is None or target.name not in ctx.sessions:
        finish(ctx, row, Step.Status.FAILED, "The node to hand over to is unreachable.", transcript)
        return False
    if master is None:
        finish(ctx, row, Step.Status.FAILED, "No node is MASTER of every service IP: run Check first.", transcript)
        return False
    if master == target.name:
        finish(ctx, row, Step.Status.OK, f"{master} already holds every service IP.", transcript)
        return True
    prober = prober_for(ctx, master, target.name)
    if prober is None:
        finish(ctx, row, Step.Status.FAILED, "No session to probe the service IPs from.", transcript)
        return False
    probes = [Pinger(prober, h, COUNT, INTERVAL) for v in ctx.vips for h in v.hosts]
    why = silent(probes)
    if why is not None:
        finish(ctx, row, Step.Status.FAILED, f"{why}: nothing was demoted.", transcript)
        return False
    record = Drill.objects.create(cluster=ctx.cluster, run=ctx.run, kind=Drill.Kind.HANDOVER, master_before=master,
                                  probe=prober.name, demoted=ctx.server(master))
    t0 = time.monotonic()
    try:
        given_up = _step_back(ctx, target, transcript)
    except (SSHError, OpFailed) as e:
        finish(ctx, row, Step.Status.FAILED, f"{getattr(e, 'message', e)} Check repairs what is left.", transcript)
        return False
    limit = carp_cluster.transition_deadline(ctx.advbase)
    took = until(lambda: is_master(ctx, target.name, transcript), seconds=limit, every=0.05, stop=ctx.stop)
    seconds = time.monotonic() - t0
    results = [p.figures() for p in probes]
    lines = [f"{r['address']}: {r['lost']} of {r['sent']} probes lost" if r["sent"] is not None else
             f"{r['address']}: not measured ({r['error']})" for r in results]
    Drill.objects.filter(pk=record.pk).update(
        status=Drill.Status.OK if took else Drill.Status.FAILED, master_during=target.name if took else "",
        takeover_s=seconds if took else None, probes=results, message="; ".join(lines))
    if not took:
        finish(ctx, row, Step.Status.FAILED, f"{target.name} did not become MASTER of every service IP within "
               f"{limit:g} s of demoting {', '.join(given_up)}. " + "; ".join(lines) + ".", transcript)
        return False
    finish(ctx, row, Step.Status.CHANGED, f"{target.name} holds every service IP {seconds:.2f} s after demoting "
           f"{', '.join(given_up)} (now in maintenance; end it to let preempt bring them back). "
           + "; ".join(lines) + f" (10 ms probes from {prober.name}).", transcript)
    return True
