"""What every kind of run does, in one table keyed by Run.Kind: node phases, cluster operations, the role it
needs and what a success means. Pure: no database query and no I/O (targets are built from loaded models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .carp import events, service_ip
from .carp import steps as carp_steps
from .carp.steps import Phase, Step, Target
from .models import Cluster, Run, Server
from .models import Step as StepRow
from .roles import Role

Kind = Run.Kind


class ClusterOp(StrEnum):
    CHECK = "check"
    MAINTENANCE = "maintenance"
    DRILL = "drill"


# The step rows of each cluster operation: (name, title).
CLUSTER_ROWS: dict[ClusterOp, list[tuple[str, str]]] = {
    ClusterOp.CHECK: [("check", "One MASTER, the rest BACKUP, VIP answers")],
    ClusterOp.MAINTENANCE: [("maintenance", "Maintenance (demotion)")],
    ClusterOp.DRILL: [("drill-demote", "Demote the master (demotion 240)"),
                      ("drill-takeover", "A backup takes over"),
                      ("drill-restore", "Restore the demotion (-240)"),
                      ("drill-failback", "The preferred master takes it back")],
}
PHASE_STEPS: dict[Phase, list[Step]] = {
    Phase.PREFLIGHT: carp_steps.PREFLIGHT, Phase.PREPARE: carp_steps.PREPARE, Phase.VERIFY: carp_steps.VERIFY,
    # Configure also installs the devd rule that reports transitions; Remove takes it away.
    Phase.CONFIGURE: events.INSTALL + service_ip.CONFIGURE, Phase.REMOVE: service_ip.REMOVE + events.UNINSTALL,
}


@dataclass(frozen=True)
class KindPlan:
    role: Role
    phases: tuple[Phase, ...] = ()
    cluster_ops: tuple[ClusterOp, ...] = ()
    configures: bool = False  # a success means the service IP is configured on every node
    removes: bool = False  # a success means it is gone
    maintenance: bool | None = None  # on or off, for the maintenance kinds (they name a target node)
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
}
assert set(PLANS) == set(Kind.values), "every kind of run has a plan"


@dataclass(frozen=True)
class RunPlan:
    """What one run will do: the node steps (on every CARP node), in stages, and the cluster-wide rows after.

    Every node finishes a stage before any node starts the next: the service IP (Configure) goes on only after
    every node passed part 1, so one node's preflight never sees another node's fresh VIP, and it goes on all
    nodes or none."""

    kind: str
    stages: list[list[Step]] = field(default_factory=list)
    cluster_ops: tuple[ClusterOp, ...] = ()
    configures: bool = False
    removes: bool = False
    maintenance: bool | None = None

    @property
    def node_steps(self) -> list[Step]:
        return [step for stage in self.stages for step in stage]

    @property
    def cluster_rows(self) -> list[tuple[str, str]]:
        return [row for op in self.cluster_ops for row in CLUSTER_ROWS[op]]


def plan_for(kind: str, *, configure_service_ip: bool) -> RunPlan:
    entry = PLANS[kind]
    phases, ops, configures = entry.phases, entry.cluster_ops, entry.configures
    if entry.optional_configure and configure_service_ip:
        phases, ops, configures = (*phases, Phase.CONFIGURE), (*ops, ClusterOp.CHECK), True
    before = [step for phase in phases if phase != Phase.CONFIGURE for step in PHASE_STEPS[phase]]
    stages = [before] if before else []
    if Phase.CONFIGURE in phases:
        stages.append(PHASE_STEPS[Phase.CONFIGURE])
    return RunPlan(kind, stages, ops, configures, entry.removes, entry.maintenance)


def run_plan(run: Run) -> RunPlan:
    return plan_for(run.kind, configure_service_ip=run.cluster.configure_service_ip)


def status_label(status: str, phase: str) -> str:
    """What a step row's status means to a person: an operation that found nothing to change is 'already done'."""
    if status == carp_steps.Verdict.OK and phase in carp_steps.OPERATION_PHASES:
        return "already done"
    return str(StepRow.Status(status).label) if status in StepRow.Status.values else status


def targets(cluster: Cluster, servers: list[Server], stamp: str) -> dict[str, Target]:
    """The CARP nodes as the steps see them: the preferred master gets the cluster's advskew, backups 100, 200..."""
    nodes = [s for s in servers if s.role == Server.Role.NODE]
    master = next((s for s in nodes if s.preferred_master), nodes[0] if nodes else None)
    backups = [s for s in nodes if s is not master]
    skews = dict(zip([s.name for s in backups], service_ip.backup_skews(len(backups), cluster.master_advskew),
                     strict=True))
    if master:
        skews[master.name] = cluster.master_advskew
    return {s.name: Target(s.name, s.address, cluster.subnet, cluster.gateway, cluster.vip, cluster.vhid,
                           cluster.interface, stamp, advskew=skews[s.name], advbase=cluster.advbase,
                           vip_prefix=cluster.vip_prefix, reapply=cluster.healthy is False) for s in nodes}
