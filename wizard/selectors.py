"""Reads: what pages and commands show."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import health
from .carp.steps import OPERATION_PHASES
from .execution.reaper import stale_since
from .models import AuditEntry, CarpEvent, Cluster, Delivery, Notice, NotificationTarget, Run, Server, Step
from .plan import plan_for, targets
from .services.clusters import cluster_readiness, shared_servers
from .timeline import cluster_timeline

INVENTORY_STATES = [("", "any state"), ("healthy", "healthy"), ("degraded", "degraded"),
                    ("never", "never verified")]


def _compressed(text: str) -> str:
    """An IPv6 address as FreeBSD and carpweb print it (2001:0db8:0::100 -> 2001:db8::100); else the text."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def cluster_inventory(*, q: str = "", state: str = "") -> QuerySet[Cluster]:
    """The inventory page: search, state filter, and the last run without one query per row."""
    last = Run.objects.filter(cluster=OuterRef("pk")).order_by("-created")
    qs = Cluster.objects.annotate(last_run_id=Subquery(last.values("pk")[:1]),
                                  last_run_status=Subquery(last.values("status")[:1]),
                                  last_run_kind=Subquery(last.values("kind")[:1]),
                                  last_run_at=Subquery(last.values("created")[:1]))
    if q:
        # Any address finds its cluster: a service IP's (IPv4 or IPv6, as typed or compressed), a node's.
        words = {q, _compressed(q)}
        by_address = Q()
        for w in words:
            by_address |= Q(service_ips__search__icontains=" " + w) | Q(servers__address__startswith=w) | \
                Q(servers__address6__istartswith=w)
        qs = qs.filter(Q(name__icontains=q) | by_address | Q(servers__name__icontains=q)).distinct()
    if state == "healthy":
        qs = qs.filter(healthy=True)
    elif state == "degraded":
        qs = qs.filter(healthy=False)
    elif state == "never":
        qs = qs.filter(healthy__isnull=True)
    return qs.prefetch_related(Prefetch("servers", queryset=Server.objects.order_by("position")),
                               "service_ips").order_by("name")


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
    """Each server's rows, then the cluster-wide rows (check, drill) that come after them."""
    grouped: dict[tuple[bool, str], list[Step]] = {}
    for step in run.steps.order_by("cluster_wide", "server_name", "position"):
        grouped.setdefault((step.cluster_wide, step.server_name), []).append(step)
    return [(rows[0].where, rows) for rows in grouped.values()]


def run_progress(run: Run) -> tuple[int, int]:
    counts = run.steps.aggregate(total=Count("pk"), done=Count("pk", filter=~Q(status__in=Step.UNFINISHED)))
    return counts["done"], counts["total"]


NO_WORKER_AFTER = 10  # seconds a run may wait for a worker before its page says none is running


def run_page(run: Run) -> dict[str, Any]:
    """What the run page and its live events show: the rows by server, progress, and the notices."""
    return {**run_head(run), "rows": run_rows_by_server(run)}


def run_head(run: Run) -> dict[str, Any]:
    """The run's header alone: status, progress, summary, notices (what most live events re-send)."""
    done, total = run_progress(run)
    return {"run": run, "done": done, "total": total, "percent": int(100 * done / total) if total else 0,
            **run_notices(run)}


def run_notices(run: Run) -> dict[str, bool]:
    """A run that waits with no worker to take it, or whose worker stopped beating."""
    waiting = run.status == Run.Status.PENDING and (timezone.now() - run.created).total_seconds() >= NO_WORKER_AFTER
    return {"stalled": run_stalled(run), "no_worker": waiting and not health.worker_answers()}


def carp_events(cluster: Cluster, since: datetime | None = None) -> QuerySet[CarpEvent]:
    """A cluster's transitions, oldest first (the node's own time; when it gave none, when carpweb got it)."""
    events = CarpEvent.objects.filter(cluster=cluster)
    if since is not None:
        events = events.filter(Q(node_time__gte=since) | Q(node_time=None, received__gte=since))
    return events.order_by(Coalesce("node_time", "received"), "id")


def notifications_page() -> dict[str, Any]:
    """Where notices go, and the latest notices with how each delivery went (failures visible)."""
    notices = Notice.objects.select_related("cluster").prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("target")))[:50]
    return {"targets": NotificationTarget.objects.select_related("cluster"), "notices": notices,
            "failed": Delivery.objects.filter(status=Delivery.Status.FAILED).count()}


def cluster_page(cluster: Cluster) -> dict[str, Any]:
    """What the cluster page and its live events show."""
    return {"cluster": cluster, "servers": list(cluster.servers.all()), "runs": cluster.runs.all()[:20],
            "service_ips": list(cluster.service_ips.all()), "shared": shared_servers(cluster=cluster),
            "problems": cluster_readiness(cluster=cluster), "drills": cluster.drills.all()[:20],
            "diagnosis": [d for d in cluster.diagnosis.splitlines() if d], "timeline": cluster_timeline(cluster),
            "events": list(cluster.carp_events.all()[:10])}


def run_stalled(run: Run) -> bool:
    """A running run whose worker stopped beating: the reaper (beat, a new worker, the next run) ends it."""
    return run.status == Run.Status.RUNNING and run.heartbeat is not None and run.heartbeat < stale_since()


@dataclass
class PlannedStep:
    title: str
    phase: str
    reads: list[str]
    changes: list[str]
    state: str  # what the last run saw, for a person
    tone: str  # the state's colour: a Step.Status value


def _forecast(phase: str, seen: str | None) -> tuple[str, str]:
    if phase in OPERATION_PHASES:
        if seen in (Step.Status.OK, Step.Status.CHANGED):
            return "already done", Step.Status.OK
        if seen == Step.Status.FAILED:
            return "will change", Step.Status.CHANGED
        return "will change if needed", Step.Status.PENDING
    if seen == Step.Status.OK:
        return "passed last time", Step.Status.OK
    if seen == Step.Status.FAILED:
        return "failed last time", Step.Status.FAILED
    return "not checked yet", Step.Status.PENDING


def command_plan(cluster: Cluster) -> list[tuple[str, list[PlannedStep]]]:
    """Per node, each step of the wizard's run: its read commands, and the change when one is needed, with what
    the last run saw. The password shows as "$CARP_PASS": it travels on stdin, never in a command."""
    last_run = cluster.runs.filter(status__in=[Run.Status.OK, Run.Status.FAILED]).first()
    last = {(s.server_name, s.name): s.status for s in Step.objects.filter(run=last_run)} if last_run else {}
    found = targets(cluster, list(cluster.servers.all()), "<timestamp>")
    vips = list(next(iter(found.values())).vips) if found else []
    steps = plan_for(Run.Kind.SETUP, configure_service_ip=cluster.configure_service_ip, vips=vips).node_steps
    plan = []
    for name, target in found.items():
        if not cluster.interface:
            target = replace(target, interface="<interface>")
        rows = []
        for planned in steps:
            own = target.for_vip(next(v for v in target.vips if v.key == planned.vip.key)) if planned.vip else target
            state, tone = _forecast(planned.phase, last.get((name, planned.name)))
            rows.append(PlannedStep(planned.title, planned.phase, planned.step.read_commands(own),
                                    planned.step.changes(own), state, tone))
        plan.append((name, rows))
    return plan
