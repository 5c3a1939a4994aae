"""The runner: plan -> execute per server in parallel, one SSH connection each, step rows written as they happen."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from . import crypto
from .carp import steps as carp_steps
from .models import Run, Server, Step
from .ssh import Connection, Endpoint, SSHError

log = logging.getLogger(__name__)
MASK = "********"


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


@dataclass
class ServerPlan:
    server: Server
    endpoint: Endpoint
    target: carp_steps.Target
    rows: list[Step]
    secrets: list[str]


def endpoint_for(server: Server) -> Endpoint:
    return Endpoint(server.name, server.ssh_host, server.ssh_port, server.ssh_user, server.auth,
                    crypto.decrypt(server.secret_enc), server.privilege, server.host_key)


def target_for(server: Server, stamp: str) -> carp_steps.Target:
    c = server.cluster
    return carp_steps.Target(server.name, server.address, c.subnet, c.gateway, c.vip, c.vhid, c.interface, stamp)


def _save(row: Step, **fields: object) -> None:
    for key, value in fields.items():
        setattr(row, key, value)
    row.seq += 1
    row.save(update_fields=[*fields, "seq"])


def plan_run(run: Run) -> list[ServerPlan]:
    """Create every step row (pending) before anything runs, so the page shows the whole plan at once."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    cluster_secret = crypto.decrypt(run.cluster.carp_password_enc)
    plans = []
    for server in run.cluster.servers.all():
        rows = [Step(run=run, server=server, server_name=server.name, position=0, phase="preflight",
                     name="connect", title="SSH with the pinned host key")]
        for i, step in enumerate(carp_steps.steps_for(run.kind), start=1):
            rows.append(Step(run=run, server=server, server_name=server.name, position=i, phase=step.phase,
                             name=step.name, title=step.title))
        Step.objects.bulk_create(rows)
        ep = endpoint_for(server)
        plans.append(ServerPlan(server, ep, target_for(server, stamp), list(run.steps.filter(server=server)),
                                [ep.secret, cluster_secret]))
    return plans


def _execute_step(conn: Connection, plan: ServerPlan, step: carp_steps.Step, row: Step) -> bool:
    sent: list[str] = []
    results: list[carp_steps.CommandResult] = []

    def run(command: str) -> carp_steps.CommandResult:
        sent.append(command)
        _save(row, command=mask("\n".join(sent), plan.secrets))
        res = conn.run(command)
        results.append(carp_steps.CommandResult(res.code, res.stdout, res.stderr))
        return results[-1]

    try:
        for command in step.reads(plan.target):
            run(command)
        verdict = step.judge(plan.target, results)
        if isinstance(verdict, carp_steps.Change):
            before = len(results)
            for command in verdict.commands:
                if run(command).code != 0:
                    break
            confirm = verdict.confirm or (lambda r: carp_steps.Outcome("changed", verdict.message))
            verdict = confirm(results[before:])
    except SSHError as e:
        verdict = carp_steps.Outcome("failed", e.message)
    last = results[-1] if results else None
    _save(row, status=verdict.status, message=mask(verdict.message, plan.secrets), finished=timezone.now(),
          exit_code=last.code if last else None,
          stdout_tail=mask(last.stdout, plan.secrets) if last else "",
          stderr_tail=mask(last.stderr, plan.secrets) if last else "")
    return verdict.status != "failed"


def _execute_server(plan: ServerPlan) -> bool:
    close_old_connections()
    rows = plan.rows
    try:
        _save(rows[0], status=Step.Status.RUNNING, started=timezone.now())
        try:
            conn = Connection(plan.endpoint, settings.CARPWEB_SSH_CONNECT_TIMEOUT, settings.CARPWEB_SSH_COMMAND_TIMEOUT)
        except SSHError as e:
            _save(rows[0], status=Step.Status.FAILED, message=mask(e.message, plan.secrets), finished=timezone.now())
            for row in rows[1:]:
                _save(row, status=Step.Status.SKIPPED, message="not run: no SSH session")
            return False
        _save(rows[0], status=Step.Status.OK, finished=timezone.now(),
              message=f"{plan.endpoint.user}@{plan.endpoint.host}:{plan.endpoint.port}, host key as pinned")
        ok = True
        by_name = {s.name: s for s in carp_steps.steps_for(rows[1].run.kind)} if len(rows) > 1 else {}
        with conn:
            for row in rows[1:]:
                if not ok:
                    _save(row, status=Step.Status.SKIPPED, message="not run: an earlier step failed")
                    continue
                _save(row, status=Step.Status.RUNNING, started=timezone.now())
                ok = _execute_step(conn, plan, by_name[row.name], row)
        return ok
    finally:
        connection.close()


def _heartbeat(run_id: int, stop: threading.Event) -> None:
    while not stop.wait(5):
        Run.objects.filter(pk=run_id).update(heartbeat=timezone.now())
    connection.close()


def run_execute(run_id: int) -> Run:
    """Execute a run. Safe to call again for a run that was interrupted: steps are idempotent."""
    run = Run.objects.select_related("cluster").get(pk=run_id)
    if run.done:
        return run
    run.steps.all().delete()
    now = timezone.now()
    Run.objects.filter(pk=run_id).update(status=Run.Status.RUNNING, started=now, heartbeat=now)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(run_id, stop), daemon=True)
    beat.start()
    try:
        plans = plan_run(run)
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(plans)))) as pool:
            results = list(pool.map(_execute_server, plans))
    finally:
        stop.set()
    run.refresh_from_db()
    failed = run.steps.filter(status=Step.Status.FAILED)
    changed = run.steps.filter(status=Step.Status.CHANGED).count()
    run.status = Run.Status.OK if all(results) and not failed.exists() else Run.Status.FAILED
    run.summary = (f"{failed.count()} step(s) failed on {', '.join(sorted({s.server_name for s in failed}))}"
                   if failed.exists() else (f"{changed} change(s) made" if changed else "nothing to change"))
    run.finished = timezone.now()
    run.save(update_fields=["status", "summary", "finished"])
    log.info("run %s %s on cluster %s: %s", run.pk, run.kind, run.cluster.name, run.status)
    return run
