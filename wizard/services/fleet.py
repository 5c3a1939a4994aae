"""Runs over the whole inventory: `carp_run --all`, the inventory's "Check all", and the drift schedule's pass.

A fleet run starts one ordinary run per cluster (the same one-run-per-cluster lock, the same worker queue), so
nothing here waits on SSH: the workers carry the runs in parallel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from ..models import Cluster, Run
from .clusters import cluster_readiness
from .drift import SCHEDULER
from .errors import ServiceError
from .runs import run_start_ready, runs_reap

log = logging.getLogger(__name__)

FLEET_KINDS = (Run.Kind.CHECK, Run.Kind.VERIFY)
NOT_READY = "not ready: "  # how the reason of a cluster that cannot run yet begins
# A success of one of these loaded carp on every node: Verify applies from then on.
PREPARING = (Run.Kind.SETUP, Run.Kind.PREPARE, Run.Kind.CONFIGURE)


class Outcome(StrEnum):
    """What a fleet run did on one cluster."""

    STARTED = "started"
    BUSY = "busy"  # another run holds the cluster's lock
    NOT_READY = "not ready"  # servers or host keys still to confirm
    NOT_APPLICABLE = "skipped"  # the kind does not apply (no configured service IP, never prepared)


@dataclass(frozen=True)
class FleetItem:
    """One cluster of a fleet run: the run started on it, or why none was."""

    cluster: Cluster
    run: Run | None = None
    outcome: Outcome = Outcome.STARTED
    reason: str = ""  # why no run was started, a sentence

    @property
    def busy(self) -> bool:
        return self.outcome == Outcome.BUSY


def clusters_annotated() -> QuerySet[Cluster]:
    prepared = Run.objects.filter(cluster=OuterRef("pk"), status=Run.Status.OK, kind__in=PREPARING)
    return Cluster.objects.annotate(prepared=Exists(prepared)).prefetch_related("servers").order_by("name")


def applicable_kind(cluster: Any, kind: str | None) -> tuple[str | None, str]:
    """The kind to run on the cluster (None: none applies) and, if none, why. kind None: the drift pass's choice."""
    configured, prepared = cluster.service_ip_configured, cluster.prepared or cluster.service_ip_configured
    if kind is None:
        kind = Run.Kind.CHECK if configured else Run.Kind.VERIFY
    if kind == Run.Kind.CHECK and not configured:
        return None, "not checked: its service IP is not configured (run Setup or Configure first)"
    if kind == Run.Kind.VERIFY and not prepared:
        return None, "not verified: it was never prepared (run Setup first)"
    return kind, ""


def fleet_start(*, kind: str | None, user: Any = None, trigger: str = Run.Trigger.FLEET,
                actor_name: str = "") -> list[FleetItem]:
    """Start KIND on every cluster it applies to (kind None: Check where configured, else Verify where
    prepared). A busy cluster keeps its run and is reported, never waited on."""
    if kind is not None and kind not in FLEET_KINDS:
        raise ServiceError(f"{kind} cannot run on every cluster at once; choose one of {', '.join(FLEET_KINDS)}")
    items = []
    runs_reap()  # once for the whole fleet: a run whose worker died must not block its cluster
    for cluster in clusters_annotated():
        chosen, reason = applicable_kind(cluster, kind)
        problems = cluster_readiness(cluster=cluster) if chosen else []
        if chosen is None:
            items.append(FleetItem(cluster, outcome=Outcome.NOT_APPLICABLE, reason=reason))
            continue
        if problems:
            items.append(FleetItem(cluster, outcome=Outcome.NOT_READY, reason=NOT_READY + " ".join(problems)))
            continue
        try:
            run = run_start_ready(cluster=cluster, kind=chosen, user=user, trigger=trigger, actor_name=actor_name)
        except ServiceError as e:
            items.append(FleetItem(cluster, outcome=Outcome.BUSY, reason=str(e)))
            continue
        items.append(FleetItem(cluster, run=run))
    return items


def drift_check_all() -> list[int]:
    """The drift schedule's pass: the fleet path, and never a second pass while one is still running."""
    running = Run.objects.filter(trigger=Run.Trigger.SCHEDULE, status__in=Run.ACTIVE).count()
    if running:
        log.warning("drift pass skipped: %d run(s) of the previous pass are still in progress", running)
        return []
    items = fleet_start(kind=None, trigger=Run.Trigger.SCHEDULE, actor_name=SCHEDULER)
    return [item.run.pk for item in items if item.run is not None]
