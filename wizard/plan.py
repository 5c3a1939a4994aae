"""What every kind of run does, in one table keyed by Run.Kind: node phases, cluster operations, the role it
needs and what a success means. Pure: no database query and no I/O (targets are built from loaded models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .carp import service_ip, transition_log
from .carp import steps as carp_steps
from .carp.steps import Phase, Step, Target, Vip
from .models import Cluster, Run, Server, ServiceIP
from .models import Step as StepRow
from .roles import Role

Kind = Run.Kind


class ClusterOp(StrEnum):
    CHECK = "check"
    MAINTENANCE = "maintenance"
    DRILL = "drill"
    HANDOVER = "handover"


# The step rows of each cluster operation: (name, title).
CLUSTER_ROWS: dict[ClusterOp, list[tuple[str, str]]] = {
    ClusterOp.CHECK: [("check", "One MASTER, the rest BACKUP, VIP answers")],
    ClusterOp.MAINTENANCE: [("maintenance", "Maintenance (demotion)")],
    ClusterOp.HANDOVER: [("handover", "Every service IP to the named node, by demotion, probed every 10 ms")],
    ClusterOp.DRILL: [("drill-stop", "Stop CARP on the master, as a crash would (net.inet.carp.allow=0)"),
                      ("drill-takeover", "A backup takes over"),
                      ("drill-restore", "Start CARP again (net.inet.carp.allow=1)"),
                      ("drill-failback", "The preferred master takes it back")],
}
PHASE_STEPS: dict[Phase, list[Step]] = {
    Phase.PREFLIGHT: carp_steps.PREFLIGHT, Phase.PREPARE: carp_steps.PREPARE, Phase.VERIFY: carp_steps.VERIFY,
    # Configure also installs the devd rule that reports transitions; Remove takes it away.
    Phase.CONFIGURE: transition_log.INSTALL + service_ip.CONFIGURE,
    Phase.REMOVE: service_ip.REMOVE + transition_log.UNINSTALL,
}


@dataclass(frozen=True)
class KindPlan:
    role: Role
    phases: tuple[Phase, ...] = ()
    cluster_ops: tuple[ClusterOp, ...] = ()
    configures: bool = False  # a success means the service IP is configured on every node
    removes: bool = False  # a success means it is gone
    maintenance: bool | None = None  # on or off, for the maintenance kinds (they name a target node)
    handover: bool = False  # names the node that takes every service IP
    optional_configure: bool = False  # setup: also configure when the cluster asks for it
    needs_service_ip: bool = False  # only for clusters whose service IP is configured


PART_1 = (Phase.PREFLIGHT, Phase.PREPARE, Phase.VERIFY)
PLANS: dict[str, KindPlan] = {
    Kind.SETUP: KindPlan(Role.ADMIN, PART_1, optional_configure=True),
    Kind.PREFLIGHT: KindPlan(Role.OPERATOR, (Phase.PREFLIGHT,)),
    Kind.PREPARE: KindPlan(Role.ADMIN, (Phase.PREPARE,)),
    Kind.VERIFY: KindPlan(Role.OPERATOR, (Phase.VERIFY,)),
    Kind.CONFIGURE: KindPlan(Role.ADMIN, (Phase.PREPARE, Phase.CONFIGURE), (ClusterOp.CHECK,), configures=True),
    Kind.CHECK: KindPlan(Role.OPERATOR, (), (ClusterOp.CHECK,), needs_service_ip=True),
    Kind.DRILL: KindPlan(Role.OPERATOR, (), (ClusterOp.CHECK, ClusterOp.DRILL), needs_service_ip=True),
    Kind.MAINTENANCE_ON: KindPlan(Role.OPERATOR, (), (ClusterOp.MAINTENANCE, ClusterOp.CHECK), maintenance=True,
                                  needs_service_ip=True),
    Kind.MAINTENANCE_OFF: KindPlan(Role.OPERATOR, (), (ClusterOp.MAINTENANCE, ClusterOp.CHECK), maintenance=False,
                                   needs_service_ip=True),
    Kind.REMOVE: KindPlan(Role.ADMIN, (Phase.REMOVE,), removes=True),
    # The check after a handover waits for the service IPs to sit on the named node (the others in maintenance).
    Kind.HANDOVER: KindPlan(Role.OPERATOR, (), (ClusterOp.HANDOVER, ClusterOp.CHECK), maintenance=True,
                            needs_service_ip=True, handover=True),
}
assert set(PLANS) == set(Kind.values), "every kind of run has a plan"


@dataclass(frozen=True)
class PlannedStep:
    """A node step as a run plans it: node-wide, or one service IP's (its rows are named after it)."""

    step: Step
    vip: Vip | None = None

    @property
    def name(self) -> str:
        return self.step.row_name(self.vip)

    @property
    def title(self) -> str:
        return self.step.row_title(self.vip)

    @property
    def phase(self) -> str:
        return self.step.phase


@dataclass(frozen=True)
class RunPlan:
    """What one run will do: the node steps (on every CARP node), in stages, and the cluster-wide rows after.

    Every node finishes a stage before any node starts the next: the service IP (Configure) goes on only after
    every node passed part 1, so one node's preflight never sees another node's fresh VIP, and it goes on all
    nodes or none."""

    kind: str
    stages: list[list[PlannedStep]] = field(default_factory=list)
    cluster_ops: tuple[ClusterOp, ...] = ()
    configures: bool = False
    removes: bool = False
    maintenance: bool | None = None

    @property
    def node_steps(self) -> list[PlannedStep]:
        return [step for stage in self.stages for step in stage]

    @property
    def cluster_rows(self) -> list[tuple[str, str]]:
        return [row for op in self.cluster_ops for row in CLUSTER_ROWS[op]]


def _expand(phase: Phase, vips: list[Vip], only_vips: bool) -> list[PlannedStep]:
    """A phase's node-wide steps once and its per-service-IP steps once for each, grouped by service IP; Remove
    takes the service IPs off before the node-wide devd rule goes. `only_vips`: one service IP's Remove (the
    node-wide rule stays for the others)."""
    steps = PHASE_STEPS[phase]
    node_wide = [] if only_vips else [PlannedStep(s) for s in steps if not s.per_vip]
    per = [PlannedStep(s, v) for v in vips for s in steps if s.per_vip]
    return per + node_wide if phase == Phase.REMOVE else node_wide + per


def plan_for(kind: str, *, configure_service_ip: bool, vips: list[Vip] | None = None,
             only_vips: bool = False) -> RunPlan:
    entry = PLANS[kind]
    phases, ops, configures = entry.phases, entry.cluster_ops, entry.configures
    if entry.optional_configure and configure_service_ip:
        phases, ops, configures = (*phases, Phase.CONFIGURE), (*ops, ClusterOp.CHECK), True
    vips = vips or []
    before = [step for phase in phases if phase != Phase.CONFIGURE for step in _expand(phase, vips, only_vips)]
    stages = [before] if before else []
    if Phase.CONFIGURE in phases:
        stages.append(_expand(Phase.CONFIGURE, vips, only_vips))
    return RunPlan(kind, stages, ops, configures, entry.removes, entry.maintenance)


def run_plan(run: Run, vips: list[Vip]) -> RunPlan:
    """The run's plan; a Remove of one service IP (run.service_ip) plans only its rows."""
    one = run.kind == Kind.REMOVE and run.service_ip_id is not None
    if one:
        vips = [v for v in vips if v.key == str(run.service_ip_id)]
    return plan_for(run.kind, configure_service_ip=run.cluster.configure_service_ip, vips=vips, only_vips=one)


def status_label(status: str, phase: str) -> str:
    """What a step row's status means to a person: an operation that found nothing to change is 'already done'."""
    if status == carp_steps.Verdict.OK and phase in carp_steps.OPERATION_PHASES:
        return "already done"
    return str(StepRow.Status(status).label) if status in StepRow.Status.values else status


def vip_of(sip: ServiceIP, peer: Server | None = None, interface: str = "") -> Vip:
    """The service IP as the steps see it on one node; `peer` is the other node when it announces by unicast;
    `interface` the nodes' one, for a service IP made before it was chosen."""
    unicast = sip.unicast and peer is not None
    on = sip.interface or interface

    def peer_address(family6: bool) -> str:  # the peer's address on the service IP's interface
        if not unicast or peer is None or not any((":" in a) == family6 for a in sip.addresses):
            return ""
        if on == interface:
            return (peer.address6 or "") if family6 else peer.address
        return peer.address_on(on, family6)

    return Vip(on, sip.vhid, tuple(sip.addresses), sip.advbase, peer=peer_address(False), peer6=peer_address(True),
               key=str(sip.pk), existing=sip.configured)


def targets(cluster: Cluster, servers: list[Server], stamp: str, sips: list[ServiceIP] | None = None) -> \
        dict[str, Target]:
    """The CARP nodes as the steps see them: the preferred master gets the cluster's advskew, backups 100, 200...
    (node-wide: every service IP of a node has its advskew, so preempt keeps them on one node)."""
    sips = list(cluster.service_ips.all()) if sips is None else sips
    nodes = [s for s in servers if s.role == Server.Role.NODE]
    master = next((s for s in nodes if s.preferred_master), nodes[0] if nodes else None)
    backups = [s for s in nodes if s is not master]
    skews = dict(zip([s.name for s in backups], service_ip.backup_skews(len(backups), cluster.master_advskew),
                     strict=True))
    if master:
        skews[master.name] = cluster.master_advskew

    hosts = tuple(a for s in nodes for a in (s.address, s.address6) if a)

    def peer(s: Server) -> Server | None:  # unicast has one peer: the other node of a pair
        others = [o for o in nodes if o is not s]
        return others[0] if len(others) == 1 else None

    return {s.name: Target(s.name, s.address, cluster.subnet, cluster.gateway, cluster.interface, stamp,
                           advskew=skews[s.name], reapply=cluster.healthy is False,
                           vips=tuple(vip_of(sip, peer(s), cluster.interface) for sip in sips),
                           address6=s.address6 or "", cluster_hosts=hosts)
            for s in nodes}
