"""Reads: what pages and commands show."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery

from .models import AuditEntry, Cluster, Run, Server, Step

INVENTORY_STATES = [("", "any state"), ("healthy", "healthy"), ("degraded", "degraded"),
                    ("never", "never verified")]


def cluster_inventory(*, q: str = "", state: str = "") -> QuerySet[Cluster]:
    """The inventory page: search, state filter, and the last run without one query per row."""
    last = Run.objects.filter(cluster=OuterRef("pk")).order_by("-created")
    qs = Cluster.objects.annotate(last_run_id=Subquery(last.values("pk")[:1]),
                                  last_run_status=Subquery(last.values("status")[:1]),
                                  last_run_kind=Subquery(last.values("kind")[:1]),
                                  last_run_at=Subquery(last.values("created")[:1]))
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(vip__startswith=q) | Q(servers__name__icontains=q)).distinct()
    if state == "healthy":
        qs = qs.filter(healthy=True)
    elif state == "degraded":
        qs = qs.filter(healthy=False)
    elif state == "never":
        qs = qs.filter(healthy__isnull=True)
    return qs.prefetch_related(Prefetch("servers", queryset=Server.objects.order_by("position"))).order_by("name")


def audit_entries(filters: dict[str, Any]) -> QuerySet[AuditEntry]:
    qs = AuditEntry.objects.all()
    if filters.get("user"):
        qs = qs.filter(actor_name=filters["user"])
    if filters.get("cluster"):
        qs = qs.filter(cluster_name=filters["cluster"])
    if filters.get("action"):
        qs = qs.filter(action__startswith=filters["action"])
    if filters.get("since"):
        qs = qs.filter(ts__date__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(ts__date__lte=filters["until"])
    return qs.order_by("-id")


def run_rows_by_server(run: Run) -> list[tuple[str, list[Step]]]:
    grouped: dict[str, list[Step]] = {}
    for step in run.steps.order_by("server_name", "position"):
        grouped.setdefault(step.server_name, []).append(step)
    # Nodes first, then the cluster-wide rows (check, drill) that come after them.
    return sorted(grouped.items(), key=lambda item: item[0] == "cluster")


def run_progress(run: Run) -> tuple[int, int]:
    total = run.steps.count()
    done = run.steps.exclude(status__in=[Step.Status.PENDING, Step.Status.RUNNING]).count()
    return done, total


def command_plan(cluster: Cluster) -> list[tuple[str, list[dict[str, object]]]]:
    """Per node, each step of the wizard's run: its read commands, and the change when one is needed, with what
    the last run saw. The password shows as "$CARP_PASS": it travels on stdin, never in a command."""
    from .runner import node_steps, targets_for

    last_run = cluster.runs.filter(status__in=["ok", "failed"]).first()
    last = {(s.server_name, s.name): s.status for s in Step.objects.filter(run=last_run)} if last_run else {}
    steps = node_steps(Run(cluster=cluster, kind="setup"))
    targets = targets_for(cluster, "<timestamp>")
    plan = []
    for name, target in targets.items():
        if not cluster.interface:
            target = replace(target, interface="<interface>")
        rows = []
        for step in steps:
            seen = last.get((name, step.name))
            if step.phase in ("prepare", "configure"):
                state = {"ok": "already done", "changed": "already done", "failed": "will change"}.get(
                    seen or "", "will change if needed")
            else:
                state = {"ok": "passed last time", "failed": "failed last time"}.get(seen or "", "not checked yet")
            changes = step.changes(target)
            rows.append({"step": step, "reads": step.reads(target), "changes": changes, "state": state})
        plan.append((name, rows))
    return plan
