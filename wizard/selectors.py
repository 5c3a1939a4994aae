"""Reads: what pages and commands show."""

from __future__ import annotations

from django.db.models import QuerySet

from .carp import steps as carp_steps
from .models import Cluster, Run, Step


def cluster_list() -> QuerySet[Cluster]:
    return Cluster.objects.prefetch_related("servers").order_by("name")


def run_last(cluster: Cluster) -> Run | None:
    return cluster.runs.order_by("-created").first()


def run_rows_by_server(run: Run) -> list[tuple[str, list[Step]]]:
    grouped: dict[str, list[Step]] = {}
    for step in run.steps.order_by("server_name", "position"):
        grouped.setdefault(step.server_name, []).append(step)
    return list(grouped.items())


def run_progress(run: Run) -> tuple[int, int]:
    total = run.steps.count()
    done = run.steps.exclude(status__in=[Step.Status.PENDING, Step.Status.RUNNING]).count()
    return done, total


def command_plan(cluster: Cluster) -> list[tuple[str, list[dict[str, object]]]]:
    """Per server, each step's commands (reads, and the change when one is needed), with what the last run saw."""
    last = {(s.server_name, s.name): s.status
            for s in Step.objects.filter(run=cluster.runs.filter(status__in=["ok", "failed"]).first())} \
        if cluster.runs.exists() else {}
    plan = []
    for server in cluster.servers.all():
        target = carp_steps.Target(server.name, server.address, cluster.subnet, cluster.gateway, cluster.vip,
                                   cluster.vhid, cluster.interface or "<interface>", "<timestamp>")
        rows = []
        for step in carp_steps.steps_for("setup"):
            seen = last.get((server.name, step.name))
            if step.phase == "prepare":
                state = {"ok": "already done", "changed": "already done", "failed": "will change"}.get(
                    seen or "", "will change if needed")
            else:
                state = {"ok": "passed last time", "failed": "failed last time"}.get(seen or "", "not checked yet")
            rows.append({"step": step, "reads": step.reads(target), "changes": step.changes(target),
                         "state": state})
        plan.append((server.name, rows))
    return plan
