"""Cluster-wide operations over a run's open sessions: check (with repair), failover drill, maintenance.

The judgements come from the pure carp layer (service_ip.diagnose, outage_from_ping); this module only
sequences commands across nodes and records rows.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from django.db import close_old_connections
from django.utils import timezone

from .carp import facts, service_ip
from .carp.steps import CommandResult
from .models import Drill, Server, Step
from .ssh import Result, SSHError

if TYPE_CHECKING:
    from .runner import RunContext, Session

CHECK = ("check", "One MASTER, the rest BACKUP, VIP answers")
MAINTENANCE = ("maintenance", "Maintenance (demotion)")
DRILL = [("drill-demote", "Demote the master (demotion 240)"), ("drill-takeover", "A backup takes over"),
         ("drill-restore", "Restore the demotion (-240)"), ("drill-failback", "The preferred master takes it back")]
PROBE_INTERVAL = 0.1
PROBE_COUNT = 90  # 9 s: 1 s before the demotion, the takeover, and a few seconds of the new master
ROW = "cluster"


class OpFailed(Exception):
    pass


def _begin(ctx: RunContext, name: str) -> Step:
    row = ctx.row(ROW, name)
    ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
    return row


def _end(ctx: RunContext, row: Step, status: str, message: str, commands: list[str] | None = None) -> None:
    fields: dict[str, object] = {"status": status, "message": message, "finished": timezone.now()}
    if commands:
        fields["command"] = "\n".join(commands)
    ctx.save(row, **fields)


def _nodes(ctx: RunContext) -> list[Server]:
    return [s for s in ctx.cluster.servers.all() if s.role == Server.Role.NODE]


def _sysctl_int(session: Session, name: str) -> int | None:
    res = session.run(f"sysctl -n {name}")
    try:
        return int(res.stdout.strip()) if res.code == 0 else None
    except ValueError:
        return None


def _set_demotion(session: Session, current: int, wanted: int, sent: list[str]) -> None:
    """The demotion counter adds what is written: write the difference."""
    if current == wanted:
        return
    cmd = f"sysctl net.inet.carp.demotion={wanted - current}"
    sent.append(f"{session.name}: {cmd}")
    res = session.run(cmd)
    if res.code != 0:
        raise OpFailed(f"{session.name}: {cmd} failed: {res.stderr.strip()}")


def gather(ctx: RunContext) -> tuple[list[service_ip.NodeFacts], bool | None]:
    found = []
    for server in _nodes(ctx):
        session = ctx.sessions.get(server.name)
        t = ctx.targets[server.name]
        if session is None:
            found.append(service_ip.NodeFacts(server.name, None, None, False, None, None, None, server.maintenance,
                                              reachable=False, error="no SSH session"))
            continue
        try:
            found.append(service_ip.node_facts(
                server.name, t, session.run(f"ifconfig {t.interface}").stdout,
                _fact(session.run("sysctl -n net.inet.carp.demotion")),
                _fact(session.run("sysctl -n net.inet.carp.preempt")),
                session.run("cat /etc/rc.conf").stdout, server.maintenance))
        except SSHError as e:
            found.append(service_ip.NodeFacts(server.name, None, None, False, None, None, None, server.maintenance,
                                              reachable=False, error=e.message))
    prober = _prober(ctx, found)
    answers = None
    if prober is not None:
        try:
            answers = prober.run(f"ping -c 1 -t 1 {ctx.cluster.vip}").code == 0
        except SSHError:
            answers = None
    return found, answers


def _fact(res: Result) -> CommandResult:
    return CommandResult(res.code, res.stdout, res.stderr)


def _is_master(ctx: RunContext, name: str) -> bool:
    t = ctx.targets[name]
    iface = facts.parse_ifconfig(ctx.sessions[name].run(f"ifconfig {t.interface}").stdout).get(t.interface)
    return bool(iface and any(c.vhid == ctx.cluster.vhid and c.state == "MASTER" for c in iface.carp))


def _prober(ctx: RunContext, found: list[service_ip.NodeFacts] | None = None) -> Session | None:
    """A probe server if the cluster has one, else a BACKUP node (never the master itself)."""
    for server in ctx.cluster.servers.all():
        if server.role == Server.Role.PROBE and server.name in ctx.sessions:
            return ctx.sessions[server.name]
    for n in found or []:
        if n.state == "BACKUP" and n.name in ctx.sessions:
            return ctx.sessions[n.name]
    return next((ctx.sessions[s.name] for s in _nodes(ctx) if s.name in ctx.sessions), None)


def repair_demotions(ctx: RunContext, sent: list[str]) -> list[str]:
    """Undo what a drill or send errors left raised; keep maintenance nodes at 240."""
    repaired = []
    for drill in ctx.cluster.drills.filter(demotion_pending=True):
        drill.demotion_pending = False
        drill.save(update_fields=["demotion_pending"])
    for server in _nodes(ctx):
        session = ctx.sessions.get(server.name)
        if session is None:
            continue
        current = _sysctl_int(session, "net.inet.carp.demotion")
        if current is None:
            continue
        wanted = 240 if server.maintenance else 0
        if current != wanted:
            _set_demotion(session, current, wanted, sent)
            repaired.append(f"{server.name}: demotion {current} -> {wanted}")
    return repaired


def check(ctx: RunContext, row: Step) -> bool:
    sent: list[str] = []
    repaired = repair_demotions(ctx, sent)
    deadline = time.monotonic() + 3 * ctx.cluster.advbase + 6
    preferred = next((s.name for s in _nodes(ctx) if s.preferred_master and not s.maintenance), None)
    while True:
        found, answers = gather(ctx)
        diagnosis = service_ip.diagnose(found, ctx.cluster.vhid, answers)
        # After a repair (or a maintenance change), give preempt its moment to bring the VIP home.
        settled = not (repaired or ctx.run.kind.startswith("maintenance")) or diagnosis.master in (preferred, None)
        if (diagnosis.healthy and settled) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    now = timezone.now()
    for n in found:
        Server.objects.filter(cluster=ctx.cluster, name=n.name).update(
            carp_state=n.state or ("unreachable" if not n.reachable else ""), carp_advskew=n.advskew,
            demotion=n.demotion)
    states = ", ".join(f"{n.name} {n.state or ('unreachable' if not n.reachable else 'no vhid')}" for n in found)
    lines = [*(f"Repaired {r}." for r in repaired), *diagnosis.problems]
    ctx.cluster.diagnosis = "\n".join(lines)
    ctx.cluster.healthy, ctx.cluster.checked_at = diagnosis.healthy, now
    ctx.cluster.save(update_fields=["diagnosis", "healthy", "checked_at"])
    if diagnosis.healthy:
        vip = "answers" if answers else "not probed" if answers is None else "does not answer"
        _end(ctx, row, "changed" if repaired else "ok", f"{states}; VIP {vip}. " + " ".join(lines), sent)
        return True
    _end(ctx, row, "failed", f"{states}. " + " ".join(lines), sent)
    return False


def maintenance(ctx: RunContext, row: Step) -> bool:
    target = ctx.run.target
    on = ctx.run.kind == "maintenance-on"
    session = ctx.sessions.get(target.name) if target else None
    if target is None or session is None:
        _end(ctx, row, "failed", "The maintenance node is unreachable.")
        return False
    sent: list[str] = []
    current = _sysctl_int(session, "net.inet.carp.demotion")
    if current is None:
        _end(ctx, row, "failed", f"{target.name}: carp is not loaded.")
        return False
    _set_demotion(session, current, 240 if on else 0, sent)
    Server.objects.filter(pk=target.pk).update(maintenance=on)  # the check that follows reads it back
    _end(ctx, row, "changed" if sent else "ok",
         f"{target.name} {'in' if on else 'out of'} maintenance (demotion {240 if on else 0}).", sent)
    return True


def drill(ctx: RunContext) -> bool:
    cluster = ctx.cluster
    found, _ = gather(ctx)
    master = next((n.name for n in found if n.state == "MASTER"), None)
    rows = {name: ctx.row(ROW, name) for name, _ in DRILL}
    if master is None:
        for r in rows.values():
            _end(ctx, r, "skipped", "not run: no MASTER to demote")
        return False
    m_session = ctx.sessions[master]
    prober = _prober(ctx, found)
    backups = [n.name for n in found if n.state == "BACKUP" and n.name in ctx.sessions]
    record = Drill.objects.create(cluster=cluster, run=ctx.run, master_before=master,
                                  probe=prober.name if prober else "", demoted=cluster.servers.get(name=master))
    probe_out: dict[str, str] = {}

    def probe() -> None:
        close_old_connections()
        try:
            if prober is not None:
                res = prober.run(f"ping -c {PROBE_COUNT} -i {PROBE_INTERVAL} -W 200 {cluster.vip}",
                                 timeout=PROBE_COUNT * PROBE_INTERVAL + 20)
                probe_out["text"] = res.stdout
        except SSHError as e:
            probe_out["error"] = e.message

    sent: list[str] = []
    ok = True
    probe_thread = threading.Thread(target=probe, daemon=True)
    try:
        row = rows["drill-demote"]
        ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
        current = _sysctl_int(m_session, "net.inet.carp.demotion") or 0
        # Recorded before the change: if this worker dies now, the next run finds and repairs it.
        Drill.objects.filter(pk=record.pk).update(demotion_pending=True)
        probe_thread.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        _set_demotion(m_session, current, current + 240, sent)
        _end(ctx, row, "changed", f"{master} demoted by 240 (prober: {prober.name if prober else 'none'})", sent)

        row = rows["drill-takeover"]
        ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
        new_master, takeover = None, None
        limit = 3 * cluster.advbase + 8
        while time.monotonic() - t0 < limit and new_master is None:
            for name in backups:
                if _is_master(ctx, name):
                    new_master, takeover = name, time.monotonic() - t0
                    break
            else:
                time.sleep(0.1)
        if new_master is None:
            ok = False
            _end(ctx, row, "failed", f"No backup became MASTER within {limit} s of demoting {master}.")
        else:
            _end(ctx, row, "ok", f"{new_master} reported MASTER after {takeover:.2f} s")
        # The prober's window covers the demotion only; the failback is judged on its own afterwards.
        probe_thread.join(PROBE_COUNT * PROBE_INTERVAL + 25)
    except (SSHError, OpFailed) as e:
        ok = False
        _end(ctx, ctx.row(ROW, "drill-demote"), "failed", getattr(e, "message", str(e)))
        new_master, takeover = None, None
    finally:
        restored = _restore(ctx, m_session, master, record, rows["drill-restore"])
    outage = None
    if "text" in probe_out:
        outage, _, _ = service_ip.outage_from_ping(probe_out["text"], PROBE_INTERVAL)
    skew = ctx.targets[new_master].advskew if new_master else 100
    bound = 3 * cluster.advbase + skew / 256
    failback = _failback(ctx, master, rows["drill-failback"]) if restored else False
    if not restored:
        _end(ctx, rows["drill-failback"], "skipped", "not run: the demotion could not be restored yet")
    status = "ok" if ok and restored and failback else "failed"
    Drill.objects.filter(pk=record.pk).update(
        status=status, master_during=new_master or "", takeover_s=takeover, outage_s=outage, bound_s=bound,
        failback_ok=failback, message=probe_out.get("error", ""))
    return status == "ok"


def _restore(ctx: RunContext, session: Session, master: str, record: Drill, row: Step) -> bool:
    ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
    sent: list[str] = []
    try:
        current = _sysctl_int(session, "net.inet.carp.demotion")
        server = ctx.cluster.servers.get(name=master)
        _set_demotion(session, current or 0, 240 if server.maintenance else 0, sent)
    except (SSHError, OpFailed) as e:
        _end(ctx, row, "failed", f"{getattr(e, 'message', e)} The demotion stays recorded: the next run "
             f"(Check) restores it on {master}.", sent)
        return False
    Drill.objects.filter(pk=record.pk).update(demotion_pending=False)
    _end(ctx, row, "changed", f"{master}: demotion back to 0", sent)
    return True


def _failback(ctx: RunContext, master: str, row: Step) -> bool:
    ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
    t0 = time.monotonic()
    limit = 3 * ctx.cluster.advbase + 10
    while time.monotonic() - t0 < limit:
        if _is_master(ctx, master):
            _end(ctx, row, "ok", f"{master} is MASTER again after {time.monotonic() - t0:.2f} s")
            return True
        time.sleep(0.2)
    _end(ctx, row, "failed", f"{master} did not take the VIP back within {limit} s: is preempt on everywhere?")
    return False


def execute(ctx: RunContext, names: list[str], node_ok: bool) -> None:
    for name in names:
        if name.startswith("drill-"):
            continue
        row = ctx.row(ROW, name)
        if not node_ok and name == "check" and ctx.run.kind in ("setup", "configure"):
            _end(ctx, row, "skipped", "not run: a node step failed")
            continue
        ctx.save(row, status=Step.Status.RUNNING, started=timezone.now())
        try:
            ok = check(ctx, row) if name == "check" else maintenance(ctx, row)
        except (SSHError, OpFailed) as e:
            _end(ctx, row, "failed", getattr(e, "message", str(e)))
            ok = False
        if name == "check" and "drill-demote" in names:
            if ok:
                drill(ctx)
            else:
                for dname, _ in DRILL:
                    _end(ctx, ctx.row(ROW, dname), "skipped", "not run: the cluster is not healthy")
