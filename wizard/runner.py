"""The runner: plan -> execute per server in parallel, one SSH connection each, step rows written as they happen.

Node phases run on every CARP node in parallel; cluster operations (check, drill, maintenance) then run
over the same connections. Tasks call `run_execute`; nothing here decides what a step means.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from . import audit, cluster_ops, crypto, drift
from .carp import service_ip
from .carp import steps as carp_steps
from .models import Cluster, Run, Server, Step
from .ssh import Connection, Endpoint, Result, SSHError

log = logging.getLogger(__name__)
MASK = "********"
CLUSTER_ROW = "cluster"


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def node_steps(run: Run) -> list[carp_steps.Step]:
    kind, cluster = run.kind, run.cluster
    by_phase = {"preflight": carp_steps.steps_for("preflight"), "prepare": carp_steps.steps_for("prepare"),
                "verify": carp_steps.steps_for("verify"), "configure": service_ip.CONFIGURE_STEPS,
                "remove": service_ip.REMOVE_STEPS}
    phases = {"setup": ["preflight", "prepare", "verify"] + (["configure"] if cluster.configure_service_ip else []),
              "preflight": ["preflight"], "prepare": ["prepare"], "verify": ["verify"],
              "configure": ["prepare", "configure"], "remove": ["remove"]}.get(kind, [])
    return [step for phase in phases for step in by_phase[phase]]


def cluster_steps(run: Run) -> list[tuple[str, str]]:
    configured = run.kind == "configure" or (run.kind == "setup" and run.cluster.configure_service_ip)
    return {"check": [cluster_ops.CHECK], "drill": [cluster_ops.CHECK, *cluster_ops.DRILL],
            "maintenance-on": [cluster_ops.MAINTENANCE, cluster_ops.CHECK],
            "maintenance-off": [cluster_ops.MAINTENANCE, cluster_ops.CHECK]}.get(
        run.kind, [cluster_ops.CHECK] if configured else [])


def endpoint_for(server: Server) -> Endpoint:
    return Endpoint(server.name, server.ssh_host, server.ssh_port, server.ssh_user, server.auth,
                    crypto.decrypt(server.secret_enc), server.privilege, server.host_key)


def targets_for(cluster: Cluster, stamp: str) -> dict[str, service_ip.CarpTarget]:
    nodes = [s for s in cluster.servers.all() if s.role == Server.Role.NODE]
    master = next((s for s in nodes if s.preferred_master), nodes[0] if nodes else None)
    backups = [s for s in nodes if s is not master]
    skews = {s.name: k for s, k in zip(backups, service_ip.backup_skews(len(backups), cluster.master_advskew),
                                       strict=True)}
    if master:
        skews[master.name] = cluster.master_advskew
    return {s.name: service_ip.CarpTarget(
        s.name, s.address, cluster.subnet, cluster.gateway, cluster.vip, cluster.vhid, cluster.interface, stamp,
        advskew=skews[s.name], advbase=cluster.advbase, vip_prefix=cluster.vip_prefix,
        reapply=cluster.healthy is False) for s in nodes}


class Session:
    """A connection plus the run's secrets: sends $CARP_PASS on stdin, masks every secret in what it records."""

    def __init__(self, conn: Connection, secrets: list[str], carp_pass: str) -> None:
        self.conn, self.secrets, self.carp_pass = conn, secrets, carp_pass
        self.name = conn.ep.name

    def run(self, command: str, timeout: float | None = None) -> Result:
        if service_ip.PASS_REF in command:
            return self.conn.run("IFS= read -r CARP_PASS; " + command, stdin=self.carp_pass + "\n", timeout=timeout)
        return self.conn.run(command, timeout=timeout)


@dataclass
class RunContext:
    run: Run
    cluster: Cluster
    targets: dict[str, service_ip.CarpTarget]
    secrets: list[str]
    carp_pass: str
    sessions: dict[str, Session] = field(default_factory=dict)
    rows: dict[tuple[str, str], Step] = field(default_factory=dict)

    def save(self, row: Step, **fields: object) -> None:
        for key, value in fields.items():
            if isinstance(value, str) and key in ("message", "command", "stdout_tail", "stderr_tail"):
                value = mask(value, self.secrets)
            setattr(row, key, value)
        row.seq += 1
        row.save(update_fields=[*fields, "seq"])

    def row(self, server: str, name: str) -> Step:
        return self.rows[(server, name)]


def plan_run(ctx: RunContext) -> None:
    """Every step row exists (pending) before anything runs, so the page shows the whole plan at once."""
    run = ctx.run
    steps = node_steps(run)
    servers = list(ctx.cluster.servers.all())
    rows = []
    for server in servers:
        rows.append(Step(run=run, server=server, server_name=server.name, position=0, phase="connect",
                         name="connect", title="SSH with the pinned host key"))
        if server.role == Server.Role.NODE:
            rows += [Step(run=run, server=server, server_name=server.name, position=i, phase=s.phase, name=s.name,
                          title=s.title) for i, s in enumerate(steps, start=1)]
    rows += [Step(run=run, server=None, server_name=CLUSTER_ROW, position=i, phase="cluster", name=name,
                  title=title) for i, (name, title) in enumerate(cluster_steps(run))]
    Step.objects.bulk_create(rows)
    ctx.rows = {(r.server_name, r.name): r for r in run.steps.all()}


def _execute_step(ctx: RunContext, session: Session, step: carp_steps.Step, row: Step) -> bool:
    target = ctx.targets[session.name]
    sent: list[str] = []
    results: list[carp_steps.CommandResult] = []

    def run(command: str) -> carp_steps.CommandResult:
        sent.append(command)
        ctx.save(row, command="\n".join(sent))
        res = session.run(command)
        results.append(carp_steps.CommandResult(res.code, res.stdout, res.stderr))
        return results[-1]

    try:
        for command in step.reads(target):
            run(command)
        verdict = step.judge(target, results)
        if isinstance(verdict, carp_steps.Change):
            change = verdict
            before = len(results)
            for command in change.commands:
                if run(command).code != 0:
                    break
            failed = results[-1].code != 0
            if change.confirm:
                verdict = change.confirm(results[before:])
            elif failed:
                err = results[-1].stderr.strip() or results[-1].stdout.strip()
                verdict = carp_steps.Outcome("failed", f"{change.message}: failed on {session.name}: {err}")
            else:
                verdict = carp_steps.Outcome("changed", change.message)
    except SSHError as e:
        verdict = carp_steps.Outcome("failed", e.message)
    last = results[-1] if results else None
    ctx.save(row, status=verdict.status, message=verdict.message, finished=timezone.now(),
             exit_code=last.code if last else None, stdout_tail=last.stdout if last else "",
             stderr_tail=last.stderr if last else "")
    return verdict.status != "failed"


def _connect_and_run_node(ctx: RunContext, server: Server) -> bool:
    close_old_connections()
    try:
        first = ctx.row(server.name, "connect")
        ctx.save(first, status=Step.Status.RUNNING, started=timezone.now())
        ep = endpoint_for(server)
        try:
            conn = Connection(ep, settings.CARPWEB_SSH_CONNECT_TIMEOUT, settings.CARPWEB_SSH_COMMAND_TIMEOUT)
        except SSHError as e:
            ctx.save(first, status=Step.Status.FAILED, message=e.message, finished=timezone.now())
            if e.kind == "hostkey" and server.host_key:
                audit.record("hostkey.mismatch", obj=server, after={"message": e.message}, link=f"/runs/{ctx.run.pk}/",
                             actor_name="system")
            for (name, _), row in ctx.rows.items():
                if name == server.name and row.pk != first.pk:
                    ctx.save(row, status=Step.Status.SKIPPED, message="not run: no SSH session")
            return False
        session = Session(conn, ctx.secrets, ctx.carp_pass)
        ctx.sessions[server.name] = session
        ctx.save(first, status=Step.Status.OK, finished=timezone.now(),
                 message=f"{ep.user}@{ep.host}:{ep.port}, host key as pinned")
        ok = True
        for step in node_steps(ctx.run) if server.role == Server.Role.NODE else []:
            row = ctx.row(server.name, step.name)
            if not ok:
                ctx.save(row, status=Step.Status.SKIPPED, message="not run: an earlier step failed")
                continue
            ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
            ok = _execute_step(ctx, session, step, row)
        return ok
    finally:
        connection.close()


HEARTBEAT_SECONDS = 5
STALE_SECONDS = 30


def runs_reap() -> list[int]:
    """Mark as interrupted the runs whose worker stopped beating (killed, or the machine died)."""
    stale = timezone.now() - timedelta(seconds=STALE_SECONDS)
    dead = list(Run.objects.filter(status=Run.Status.RUNNING, heartbeat__lt=stale).values_list("pk", flat=True))
    for pk in dead:
        if Run.objects.filter(pk=pk, status=Run.Status.RUNNING, heartbeat__lt=stale).update(
                status=Run.Status.INTERRUPTED, finished=timezone.now(),
                summary="interrupted: the worker stopped (no heartbeat for 30 s); start the run again"):
            Step.objects.filter(run_id=pk, status__in=[Step.Status.PENDING, Step.Status.RUNNING]).update(
                status=Step.Status.SKIPPED, message="not finished: the worker stopped")
            run = Run.objects.select_related("cluster").get(pk=pk)
            audit.record("run.interrupted", obj=run, cluster=run.cluster, after={"kind": run.kind},
                         link=f"/runs/{pk}/", actor_name="system")
    return dead


def _heartbeat(run_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        Run.objects.filter(pk=run_id).update(heartbeat=timezone.now())
    connection.close()


def run_execute(run_id: int) -> Run:
    """Execute a run. Safe to call again for a run that was interrupted: steps are idempotent."""
    now = timezone.now()
    # Claim the run: only the first worker to flip pending -> running executes it, so a redelivered or
    # duplicated message never runs it twice.
    if not Run.objects.filter(pk=run_id, status=Run.Status.PENDING).update(
            status=Run.Status.RUNNING, started=now, heartbeat=now):
        return Run.objects.get(pk=run_id)
    run = Run.objects.select_related("cluster", "target").get(pk=run_id)
    cluster = run.cluster
    states_before = drift.states(cluster)
    carp_pass = crypto.decrypt(cluster.carp_password_enc)
    servers = list(cluster.servers.all())
    ctx = RunContext(run, cluster, targets_for(cluster, now.strftime("%Y%m%dT%H%M%S")),
                     [carp_pass, *[crypto.decrypt(s.secret_enc) for s in servers]], carp_pass)
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(run_id, stop), daemon=True).start()
    limit = settings.CARPWEB_RUN_TIMEOUT
    timed_out = False
    try:
        plan_run(ctx)
        pool = ThreadPoolExecutor(max_workers=max(1, min(32, len(servers))))
        futures = [pool.submit(_connect_and_run_node, ctx, s) for s in servers]
        done, pending = wait(futures, timeout=limit)
        timed_out = bool(pending)
        pool.shutdown(wait=False, cancel_futures=True)
        if not timed_out:
            results = [f.result() for f in futures]
            node_ok = all(r for r, s in zip(results, servers, strict=True) if s.role == Server.Role.NODE)
            ops = cluster_steps(run)
            if ops:
                cluster_ops.execute(ctx, [name for name, _ in ops], node_ok)
    finally:
        stop.set()
        for session in ctx.sessions.values():
            session.conn.close()  # also ends any step still waiting on a server after a timeout
    if timed_out:
        run_timed_out(run_id)
        audit.record("run.finish", obj=run, cluster=cluster, after={"kind": run.kind, "status": "failed",
                                                                    "summary": "time limit"},
                     link=f"/runs/{run.pk}/", actor=run.created_by, actor_name=run.created_by_name)
        return Run.objects.get(pk=run_id)
    run.refresh_from_db()
    failed = run.steps.filter(status=Step.Status.FAILED)
    changed = run.steps.filter(status=Step.Status.CHANGED).count()
    run.status = Run.Status.FAILED if failed.exists() else Run.Status.OK
    run.summary = (f"{failed.count()} step(s) failed on {', '.join(sorted({s.server_name for s in failed}))}"
                   if failed.exists() else (f"{changed} change(s) made" if changed else "nothing to change"))
    run.finished = timezone.now()
    run.save(update_fields=["status", "summary", "finished"])
    configured = run.kind == "configure" or (run.kind == "setup" and cluster.configure_service_ip)
    if run.status == Run.Status.OK and configured:
        Cluster.objects.filter(pk=cluster.pk).update(service_ip_configured=True)
    elif run.status == Run.Status.OK and run.kind == "remove":
        Cluster.objects.filter(pk=cluster.pk).update(service_ip_configured=False, healthy=None, diagnosis="")
    audit.record("run.finish", obj=run, cluster=cluster, after={"kind": run.kind, "status": run.status,
                                                                "summary": run.summary},
                 link=f"/runs/{run.pk}/", actor=run.created_by, actor_name=run.created_by_name)
    if run.created_by_name == drift.SCHEDULER:
        drift.record(run, states_before)
    log.info("run %s %s on cluster %s: %s", run.pk, run.kind, cluster.name, run.status)
    return run


def run_timed_out(run_id: int) -> str:
    limit = settings.CARPWEB_RUN_TIMEOUT
    time.sleep(0.5)  # let the steps cut short by the closed sessions record their failure first
    Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
        status=Run.Status.FAILED, finished=timezone.now(),
        summary=f"stopped: the run took longer than CARPWEB_RUN_TIMEOUT ({limit:g} s)")
    Step.objects.filter(run_id=run_id, status__in=[Step.Status.PENDING, Step.Status.RUNNING]).update(
        status=Step.Status.SKIPPED, message="not finished: the run's time limit was reached")
    return Run.Status.FAILED
