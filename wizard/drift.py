"""Scheduled drift checks: start a check (or verify) on every cluster, and record what changed since last time."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import audit
from .models import Cluster, Run, Server, Step

SCHEDULER = "scheduler"


def states(cluster: Cluster) -> dict[str, Any]:
    return {s.name: s.carp_state or "" for s in cluster.servers.filter(role=Server.Role.NODE)}


def drift_check_all() -> list[int]:
    """Start one run per cluster that can run: check where the VIP is configured, verify where only prepared."""
    from . import services

    started = []
    for cluster in Cluster.objects.all():
        if services.cluster_readiness(cluster=cluster):
            continue
        kind = "check" if cluster.service_ip_configured else "verify"
        try:
            run = services.run_start(cluster=cluster, kind=kind, actor_name=SCHEDULER)
        except services.ServiceError:
            continue  # a run is in progress: the next schedule looks again
        started.append(run.pk)
    return started


def findings(run: Run, before: dict[str, Any]) -> list[str]:
    cluster = run.cluster
    after = states(cluster)
    found = []
    old_master = next((n for n, s in before.items() if s == "MASTER"), None)
    new_master = next((n for n, s in after.items() if s == "MASTER"), None)
    if run.kind == "check" and old_master and new_master and old_master != new_master:
        found.append(f"The master moved from {old_master} to {new_master}.")
    for step in run.steps.filter(status=Step.Status.FAILED).exclude(name="check"):
        found.append(step.message)
    if run.kind == "check":
        found += [line for line in cluster.diagnosis.splitlines() if line and not line.startswith("Repaired")]
    return found


def record(run: Run, before: dict[str, Any]) -> None:
    """After a scheduled run: findings go to the audit log and to the cluster's diagnosis."""
    cluster = Cluster.objects.get(pk=run.cluster_id)
    run.cluster = cluster
    found = findings(run, before)
    if not found:
        if run.kind == "verify" and cluster.healthy is False:
            Cluster.objects.filter(pk=cluster.pk).update(healthy=None, diagnosis="")
        return
    with transaction.atomic():
        if run.kind == "verify":
            Cluster.objects.filter(pk=cluster.pk).update(healthy=False, diagnosis="\n".join(found))
        audit.record("drift", obj=cluster, before={"states": before}, after={"states": states(cluster),
                                                                             "findings": found},
                     link=f"/runs/{run.pk}/", actor_name=SCHEDULER)
