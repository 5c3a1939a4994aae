"""Runs: start one (refused while the cluster is busy), and what a finished run changes (flags, audit, drift)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from carpweb.celery import app

from .. import audit, links, revisions
from ..execution import reaper, runner
from ..execution.connect import Connector, ssh_lease
from ..models import Cluster, Run, Server, ServiceIP
from ..plan import PLANS, plan_for
from ..roles import Role, has_role
from . import drift
from .clusters import cluster_readiness
from .errors import RoleRequired, ServiceError

RUN_EXECUTE = "wizard.run_execute"  # the Celery task (wizard.tasks) that calls run_execute below


def _maintenance_node(cluster: Cluster, kind: str, target: str, confirm: bool) -> Server | None:
    on = PLANS[kind].maintenance
    if on is None:
        return None
    node = cluster.servers.filter(name=target, role=Server.Role.NODE).first()
    if node is None and PLANS[kind].handover:
        raise ServiceError(f"Name the CARP node that takes every service IP (got {target!r}).")
    if node is None:
        raise ServiceError(f"Name the CARP node to put in or out of maintenance (got {target!r}).")
    if PLANS[kind].handover:
        return node
    others = cluster.servers.filter(role=Server.Role.NODE).exclude(pk=node.pk)
    if on and not others.filter(maintenance=False).exists() and not confirm:
        raise ServiceError("Every other node is already in maintenance: the VIP would have no preferred "
                           "home. Confirm explicitly to do it anyway.")
    return node


def run_start(*, cluster: Cluster, kind: str, user: Any = None, target: str = "", confirm: bool = False,
              trigger: str = Run.Trigger.USER, actor_name: str = "", service_ip: int | None = None) -> Run:
    """Start a run after the transaction commits; refused while another run of the cluster is in progress. A
    person (`user`) must hold the role the kind needs, whatever calls this (a page, the API, a script); without a
    user the caller is the command line or the schedule, run by whoever operates carpweb's machines."""
    if kind not in PLANS:
        raise ServiceError(f"unknown run kind {kind!r}")
    _require_role(user, kind)
    node = _maintenance_node(cluster, kind, target, confirm)
    sip = None
    if service_ip is not None:
        sip = cluster.service_ips.filter(pk=service_ip).first()
        if kind != Run.Kind.REMOVE or sip is None:
            raise ServiceError("Only Remove takes one service IP, and it must be one of this cluster's.")
    problems = cluster_readiness(cluster=cluster)
    if problems:
        raise ServiceError("Not ready to run: " + " ".join(problems))
    return _create(cluster, kind, node, sip, user, trigger, actor_name, target, reap=True)


def run_start_ready(*, cluster: Cluster, kind: str, user: Any = None, trigger: str = Run.Trigger.USER,
                    actor_name: str = "") -> Run:
    """run_start for a caller that has just checked the cluster's readiness and reaped dead runs itself, once for
    many clusters (services.fleet): Check or Verify, no node and no single service IP."""
    if kind not in (Run.Kind.CHECK, Run.Kind.VERIFY):
        raise ServiceError(f"{kind} needs run_start")
    _require_role(user, kind)
    return _create(cluster, kind, None, None, user, trigger, actor_name, "", reap=False)


def _require_role(user: Any, kind: str) -> None:
    """A person must hold the role the kind needs, whatever calls (a page, the API, a script); without a user the
    caller is the command line or the schedule, run by whoever operates carpweb's machines."""
    if user is not None and not has_role(user, PLANS[kind].role):
        raise RoleRequired(f"{PLANS[kind].role.value.capitalize()} role needed: {kind} runs are for "
                           f"{PLANS[kind].role.value}s{' and admins' if PLANS[kind].role != Role.ADMIN else ''}.")


def _create(cluster: Cluster, kind: str, node: Server | None, sip: ServiceIP | None, user: Any, trigger: str,
            actor_name: str, target: str, reap: bool) -> Run:
    is_user = user is not None and user.is_authenticated
    with revisions.change() as rev:  # the revision first, then the row lock (one lock order everywhere)
        # The row lock serialises concurrent starts across web processes and machines.
        Cluster.objects.select_for_update().get(pk=cluster.pk)
        if reap:
            runs_reap()  # a run whose worker died must not block the cluster forever
        busy = cluster.runs.filter(status__in=Run.ACTIVE).first()
        if busy:
            raise ServiceError(f"{busy} is still in progress on {cluster.name}; wait for it to finish.")
        run = Run.objects.create(cluster=cluster, kind=kind, target=node, trigger=trigger, rev=rev, service_ip=sip,
                                 created_by=user if is_user else None,
                                 created_by_name=user.get_username() if is_user else (actor_name or "cli"))
        revisions.touch_cluster(cluster.pk, rev)
        transaction.on_commit(lambda: app.send_task(RUN_EXECUTE, args=[run.pk]))
        audit.record("run.start", obj=run, cluster=cluster, after={"kind": kind, "target": target or None,
                                                                   **({"service_ip": str(sip)} if sip else {})},
                     link=links.run_page(run.pk), actor=user,
                     actor_name="" if is_user else run.created_by_name)
    return run


def _update_cluster_flags(run: Run) -> None:
    """A successful Configure put every service IP on the nodes; a Remove took all (or its one) off."""
    plan = plan_for(run.kind, configure_service_ip=run.cluster.configure_service_ip)
    if run.status != Run.Status.OK:
        return
    with revisions.change() as rev:
        if plan.configures:
            Cluster.objects.filter(pk=run.cluster_id).update(service_ip_configured=True, rev=rev)
            ServiceIP.objects.filter(cluster_id=run.cluster_id).update(configured=True)
        elif plan.removes and run.service_ip_id is not None:
            ServiceIP.objects.filter(pk=run.service_ip_id).update(configured=False, state="")
            revisions.touch_cluster(run.cluster_id, rev)
        elif plan.removes:
            Cluster.objects.filter(pk=run.cluster_id).update(service_ip_configured=False, healthy=None, diagnosis="",
                                                             rev=rev)
            ServiceIP.objects.filter(cluster_id=run.cluster_id).update(configured=False, state="")


def run_execute(*, run_id: int, connector: Connector = ssh_lease) -> Run:
    """The Celery task's work: execute the run, then record what it changed. A run another worker claimed
    first is left alone (a duplicated or redelivered message)."""
    run = Run.objects.select_related("cluster").get(pk=run_id)
    before = drift.states(run.cluster)
    done = runner.run_execute(run_id, connector)
    if done is None:
        return run
    executed = done.run
    for server, message in done.hostkey_mismatches:
        audit.record("hostkey.mismatch", obj=server, after={"message": message}, link=links.run_page(executed.pk),
                     actor_name="system")
    _update_cluster_flags(executed)
    audit.record("run.finish", obj=executed, cluster=executed.cluster,
                 after={"kind": executed.kind, "status": executed.status, "summary": executed.summary},
                 link=links.run_page(executed.pk), actor=executed.created_by,
                 actor_name=executed.created_by_name)
    if executed.trigger == Run.Trigger.SCHEDULE:
        drift.record(executed, before)
    audit.log_head("run finished")
    return executed


def runs_reap() -> list[int]:
    """Runs whose worker stopped beating are marked interrupted, each one audited; their ids."""
    reaped = reaper.mark_interrupted()
    for run in Run.objects.filter(pk__in=reaped).select_related("cluster"):
        audit.record("run.interrupted", obj=run, cluster=run.cluster, after={"kind": run.kind},
                     link=links.run_page(run.pk), actor_name="system")
    return reaped
