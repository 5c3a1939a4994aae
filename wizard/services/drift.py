"""Drift: after a scheduled run, what changed since the last look goes to the audit log and the cluster."""

from __future__ import annotations

from .. import audit, links, revisions
from ..models import Cluster, Notice, Run, Server, Step
from ..plan import ClusterOp
from .notifications import notice_send

SCHEDULER = "scheduler"  # the name scheduled runs are shown with (their trigger says what they are)


def states(cluster: Cluster) -> dict[str, str]:
    return {s.name: s.carp_state or "" for s in cluster.servers.filter(role=Server.Role.NODE)}


def findings(run: Run, before: dict[str, str], after: dict[str, str], diagnosis: str) -> list[str]:
    """What a scheduled run found: a master that moved, failed steps, the check's problems."""
    found = []
    old_master = next((n for n, s in before.items() if s == "MASTER"), None)
    new_master = next((n for n, s in after.items() if s == "MASTER"), None)
    if run.kind == Run.Kind.CHECK and old_master and new_master and old_master != new_master:
        found.append(f"The master moved from {old_master} to {new_master}.")
    for step in run.steps.filter(status=Step.Status.FAILED).exclude(cluster_wide=True, name=ClusterOp.CHECK):
        found.append(step.message)
    if run.kind == Run.Kind.CHECK:
        found += [line for line in diagnosis.splitlines() if line and not line.startswith("Repaired")]
    return found


def record(run: Run, before: dict[str, str]) -> None:
    """After a scheduled run: findings go to the audit log and to the cluster's diagnosis."""
    cluster = Cluster.objects.get(pk=run.cluster_id)
    after = states(cluster)
    found = findings(run, before, after, cluster.diagnosis)
    if not found:
        if run.kind == Run.Kind.VERIFY and cluster.healthy is False:
            with revisions.change() as rev:
                Cluster.objects.filter(pk=cluster.pk).update(healthy=None, diagnosis="", rev=rev)
        return
    with revisions.change() as rev:
        if run.kind == Run.Kind.VERIFY:
            Cluster.objects.filter(pk=cluster.pk).update(healthy=False, diagnosis="\n".join(found), rev=rev)
        audit.record("drift", obj=cluster, before={"states": before}, after={"states": after, "findings": found},
                     link=links.run_page(run.pk), actor_name=SCHEDULER)
        notice_send(cluster=cluster, kind=Notice.Kind.DRIFT, reason=" ".join(found)[:2000])
