"""Every value that reaches a remote shell is quoted, cluster operations included: hypothesis feeds hostile
values past validation into the node steps and the cluster operations, and a recording transport shows
that no value ever changed a command's shell structure, and that no secret is in any command."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fakes import REFUSED, RecordingTransport
from wizard import services
from wizard.carp import cluster as carp_cluster
from wizard.carp.facts import CommandResult
from wizard.carp.service_ip import rc_name
from wizard.execution import cluster_ops, drill
from wizard.execution.node import execute_step
from wizard.execution.recorder import Recorder
from wizard.execution.run_context import RunContext
from wizard.execution.session import Session
from wizard.models import Cluster, Run, Server, Step
from wizard.plan import CLUSTER_ROWS, PHASE_STEPS, ClusterOp, PlannedStep, plan_for, targets

pytestmark = pytest.mark.django_db
PASSWORD = "Pw.With-Odd:Chars=1"
REVIEW = "(shown on Review, not sent)"
# Line breaks are the one thing no quoting carries to a csh login shell: the transport refuses those commands
# whole (test_a_line_break_is_never_sent); every other value must keep each command's shell words.
# No NUL: the forms refuse it at entry (tests/web/test_hostile_input.py), and PostgreSQL's text cannot hold it where
# Check stores what it saw (the cluster's diagnosis names the interface).
HOSTILE = st.one_of(st.text(min_size=1, max_size=40).filter(lambda t: "\n" not in t and "\r" not in t
                                                            and "\x00" not in t),
                    st.sampled_from(["em0; reboot", "$(id)", "`id`", "a'b", '"quoted"', "x && rm -rf /", "*", "~root",
                                     "-rf", "🙂", "!!", "a!b"]))


class MemoryRecorder(Recorder):
    """Rows kept in memory: these tests look at commands, not at persistence."""

    def save(self, row: Step, **fields: object) -> None:
        for key, value in fields.items():
            setattr(row, key, value)


@pytest.fixture
def cluster():
    return make_cluster()


def make_cluster():
    c = services.cluster_save(cluster=None, data={"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                                                  "vip": "192.0.2.100", "interface": "em0"}, carp_password=PASSWORD)
    services.servers_save(cluster=c, rows=[
        {"name": f"server-{i}", "address": f"192.0.2.1{i}", "ssh_host": "127.0.0.1", "ssh_port": 22,
         "ssh_user": "root", "auth": "password", "secret": "pw", "privilege": "root", "preferred_master": i == 1}
        for i in (1, 2)])
    return c


def _answers(command: str) -> CommandResult:
    """Enough of a host for every code path: demotion 240 (so repairs write), carp loaded, nothing configured."""
    if command.startswith("sysctl -n"):
        return CommandResult(0, "240\n", "")
    if command == "sysctl net.inet.carp":
        return CommandResult(0, "net.inet.carp.allow: 1\nnet.inet.carp.demotion: 240\n", "")
    if command.startswith("sysctl "):
        return CommandResult(0, "", "")
    return CommandResult(1, "", "")


def _context(cluster, kind: str, interface: str, vip: str) -> tuple[RunContext, dict[str, RecordingTransport]]:
    run = Run.objects.create(cluster=cluster, kind=kind, target=cluster.servers.first())
    cluster = Cluster.objects.get(pk=cluster.pk)
    cluster.interface = interface  # in memory only: past the model's validation
    servers = list(cluster.servers.all())
    found = targets(cluster, servers, "20260101T000000")
    hostile = {n: replace(t, interface=interface, vips=tuple(replace(v, interface=interface, addresses=(f"{vip}/32",))
                                                              for v in t.vips)) for n, t in found.items()}
    plan = plan_for(kind, configure_service_ip=True, vips=list(next(iter(hostile.values())).vips))
    recorder = MemoryRecorder(run, [PASSWORD])
    names = [(None, name, title) for name, title in plan.cluster_rows]
    recorder.rows = {(sid, name): Step(run=run, cluster_wide=True, name=name, title=title, phase="cluster")
                     for sid, name, title in names}
    ctx = RunContext(run, cluster, plan, servers, hostile, recorder, lambda s: RecordingTransport(_answers),
                     {v.key: PASSWORD for v in next(iter(hostile.values())).vips})
    transports = {s.name: RecordingTransport(_answers) for s in servers}
    ctx.sessions = {name: Session(name, t, PASSWORD) for name, t in transports.items()}
    return ctx, transports


def _commands(cluster, interface: str, vip: str) -> list[tuple[str, str | None]]:
    """Everything the node steps and the cluster operations send with these values."""
    sent: list[tuple[str, str | None]] = []
    Server.objects.filter(cluster=cluster).update(maintenance=False)  # maintenance-on below sets it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(carp_cluster, "transition_deadline", lambda advbase: 0.0)  # look once, do not wait for CARP
        for kind, op in ((Run.Kind.CHECK, ClusterOp.CHECK), (Run.Kind.MAINTENANCE_ON, ClusterOp.MAINTENANCE)):
            ctx, transports = _context(cluster, kind, interface, vip)
            row = ctx.recorder.row(None, CLUSTER_ROWS[op][0][0])
            (cluster_ops.check if op == ClusterOp.CHECK else cluster_ops.maintenance)(ctx, row)
            sent += [c for t in transports.values() for c in t.sent]
        ctx, transports = _context(cluster, Run.Kind.DRILL, interface, vip)
        drill.drill(ctx)
        probe = cluster_ops.Pinger(ctx.sessions["server-2"], vip, carp_cluster.probe_count(1), 0.1)
        probe.start()
        probe.finish()
        session = ctx.sessions["server-1"]
        target = ctx.targets["server-1"]
        for steps in PHASE_STEPS.values():
            for step in steps:
                one = target.vips[0] if step.per_vip else None
                execute_step(ctx, session, PlannedStep(step, one), Step(run=ctx.run, name=step.name, phase=step.phase))
                own = target.for_vip(one) if one else target
                sent += [(c, REVIEW) for c in step.changes(own)]  # what Review shows
        sent += [c for t in transports.values() for c in t.sent]
    return sent


def _expected(benign_command: str, interface: str, vip: str) -> list[str]:
    """The benign command's shell words with the hostile values put where the benign ones were."""
    swap = {"em0": interface, "192.0.2.100": vip, "ifconfig_em0_": f"ifconfig_{rc_name(interface)}_"}
    words = shlex.split(benign_command, comments=True)
    return [re.sub("ifconfig_em0_|em0|192\\.0\\.2\\.100", lambda m: swap[m.group(0)], word) for word in words]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(interface=HOSTILE, vip=HOSTILE)
def test_hostile_values_never_change_a_commands_shell_structure(cluster, interface, vip):
    assume(":" not in vip)  # an IPv6 address picks ping6 over ping: the family chooses the command, not the shell
    benign = _commands(cluster, "em0", "192.0.2.100")
    hostile = _commands(cluster, interface, vip)
    assert len(benign) == len(hostile)
    for (safe, _), (sent, stdin) in zip(benign, hostile, strict=True):
        assert shlex.split(sent, comments=True) == _expected(safe, interface, vip), (sent, safe)
        assert PASSWORD not in sent
        if "$CARP_PASS" in sent and stdin != REVIEW:
            assert sent.startswith("IFS= read -r CARP_PASS; ") and stdin == PASSWORD + "\n"


def test_the_operations_really_were_driven(cluster):
    sent = [c for c, _ in _commands(cluster, "em0", "192.0.2.100")]
    assert "sysctl net.inet.carp.demotion=-240" in sent  # check repaired the raised demotion
    assert "ping -c 1 -t 1 192.0.2.100" in sent  # check probed the VIP
    assert any(c.endswith("ifconfig em0 inet vhid 1 advskew 0 advbase 1 pass \"$CARP_PASS\" alias 192.0.2.100/32")
               for c in sent)  # configure planned and sent its change
    assert "ping -c 90 -i 0.1 -W 200 192.0.2.100" in sent




def test_a_pem_key_is_never_offered_as_a_password():
    from wizard.ssh import Connection, Endpoint, SSHError

    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    ep = Endpoint("server-1", "127.0.0.1", 9, "root", "password", pem, "root", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
    with pytest.raises(SSHError) as refused:
        Connection(ep, connect_timeout=1)  # refused before any socket: port 9 is never tried
    assert refused.value.kind == "auth" and "never sends a key as a password" in refused.value.message


def test_long_lines_and_endless_lines_are_cut():
    from wizard.ssh import LineSplitter

    got: list[str] = []
    lines = LineSplitter(got.append, limit=10)
    lines.feed(b"short\n" + b"x" * 25)
    lines.feed(b"y" * 25)
    lines.feed(b"zz\nnext\n")
    lines.close()
    assert got == ["short", "xxxxxxxxxx [line cut]", "next"]


def test_a_line_break_is_never_sent(cluster):
    """A hostile VIP with a line break, pushed past validation: each command carrying it is refused by the
    transport, recorded as not sent, and the step fails with a sentence."""
    sent = _commands(cluster, "em0", "192.0.2.100\nreboot")
    refused = [c for c, stdin in sent if stdin == REFUSED]
    assert refused and all("\n" in c for c in refused)
    assert not [c for c, stdin in sent if stdin not in (REFUSED, REVIEW) and "\n" in c]
