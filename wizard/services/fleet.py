"""Runs over the whole inventory: the drift schedule's pass (check where the VIP is configured, else verify)."""

from __future__ import annotations

from ..models import Cluster, Run
from .clusters import cluster_readiness
from .drift import SCHEDULER
from .errors import ServiceError
from .runs import run_start


def drift_check_all() -> list[int]:
    """Start one run per cluster that can run: check where the VIP is configured, verify where only prepared."""
    started = []
    for cluster in Cluster.objects.all():
        if cluster_readiness(cluster=cluster):
            continue
        kind = Run.Kind.CHECK if cluster.service_ip_configured else Run.Kind.VERIFY
        try:
            run = run_start(cluster=cluster, kind=kind, trigger=Run.Trigger.SCHEDULE, actor_name=SCHEDULER)
        except ServiceError:
            continue  # a run is in progress: the next schedule looks again
        started.append(run.pk)
    return started
