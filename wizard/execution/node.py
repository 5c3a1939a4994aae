"""One server's part of a run: connect with the pinned host key, then its node steps in order."""

from __future__ import annotations

from collections.abc import Callable

from ..carp.facts import CommandResult, is_private, private_summary
from ..carp.rcconf import RcSyntaxError
from ..carp.service_ip import RC_CONF
from ..carp.steps import Change, Outcome, Verdict
from ..models import Server, Step
from ..plan import PlannedStep
from ..ssh import SSHError
from .run_context import RunContext
from .session import Session, Transcript

NO_SESSION = "not run: no SSH session"
EARLIER_FAILED = "not run: an earlier step failed"


def connect(ctx: RunContext, server: Server) -> Session | None:
    """Open the server's session for this run, or record why not and skip its other steps."""
    row = ctx.recorder.row(server, "connect")
    ctx.recorder.start(row)
    try:
        transport = ctx.connector(server)
    except SSHError as e:
        ctx.recorder.finish(row, Step.Status.FAILED, e.message)
        if e.kind == "hostkey" and server.host_key:
            ctx.hostkey_mismatches.append((server, e.message))
        ctx.recorder.skip_pending(server, NO_SESSION)
        return None
    session = Session(server.name, transport)
    ctx.sessions[server.name] = session
    ctx.recorder.finish(row, Step.Status.OK, f"{server.ssh_user}@{server.ssh_host}:{server.ssh_port}, host key "
                        "as pinned")
    return session


def apply_change(session: Session, change: Change, transcript: Transcript,
                 on_line: Callable[[str], None] | None = None) -> tuple[Outcome, CommandResult]:
    """Run a change's commands until one fails, then judge them."""
    results: list[CommandResult] = []
    for command in change.commands:
        results.append(session.run(command, transcript, on_line=on_line))
        if not results[-1].ok:
            break
    if change.confirm:
        return change.confirm(results), results[-1]
    if not results[-1].ok:
        return Outcome(Verdict.FAILED, f"{change.message}: failed on {session.name}: {results[-1].error()}"), \
            results[-1]
    return Outcome(Verdict.CHANGED, change.message), results[-1]


def execute_step(ctx: RunContext, session: Session, planned: PlannedStep, row: Step) -> bool:
    """Read the step's facts, judge them, apply a change if one is needed; the row tells what happened."""
    step, target = planned.step, ctx.targets[session.name]
    if planned.vip is not None:  # this node's own view of the service IP (its unicast peer), and its password
        target = target.for_vip(next(v for v in target.vips if v.key == planned.vip.key))
        session = session.with_password(ctx.passwords.get(planned.vip.key, ""))
    transcript: Transcript = []
    ctx.recorder.start(row)
    last: CommandResult | None = None

    def live(line: str) -> None:  # a slow command's output shows while it runs
        ctx.recorder.live(row, line)

    try:
        facts = step.reads(target)
        # A private read (a configuration file) never streams or stays: the row keeps the verdict, not the text.
        private = any(is_private(f) for f in facts)
        values, results = session.read_all(facts, transcript, on_line=None if private else live)
        last = (private_summary(facts[-1], results[-1]) if is_private(facts[-1]) else results[-1]) if results \
            else None
        verdict = step.judge(target, values, results)
        if isinstance(verdict, Change):
            verdict, last = apply_change(session, verdict, transcript, on_line=live)
    except SSHError as e:
        verdict = Outcome(Verdict.FAILED, e.message)
        if e.kind == "hostkey":  # a warm connection replaced mid-step met another key
            ctx.hostkey_mismatches.append((ctx.server(session.name), e.message))
    except RcSyntaxError as e:  # the node's rc.conf: sh (and so sysrc and rc at boot) cannot read it either
        verdict = Outcome(Verdict.FAILED, f"{RC_CONF} does not parse as sh ({e}); sysrc and rc cannot read it "
                                          "either. Fix that line on the node, then run again.")
    ctx.recorder.finish(row, verdict.status, verdict.message, transcript, last)
    return verdict.status != Verdict.FAILED


def execute_stage(ctx: RunContext, server: Server, steps: list[PlannedStep]) -> bool:
    """One stage's steps on one node, in order; after a failure the node's remaining steps are skipped."""
    session = ctx.sessions.get(server.name)
    if session is None:
        return False
    for step in steps:
        if ctx.stop.is_set():
            return False
        if not execute_step(ctx, session, step, ctx.recorder.row(server, step.name)):
            ctx.recorder.skip_pending(server, EARLIER_FAILED)
            return False
    return True
