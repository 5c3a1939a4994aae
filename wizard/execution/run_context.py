"""What every part of a run's execution shares: the run, its plan, targets, sessions, rows and stop signal."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .. import links
from ..carp.steps import Target, Vip
from ..models import Cluster, Run, Server
from ..plan import RunPlan
from .connect import Connector
from .recorder import Recorder
from .session import Session


@dataclass
class RunContext:
    run: Run
    cluster: Cluster
    plan: RunPlan
    servers: list[Server]
    targets: dict[str, Target]
    recorder: Recorder
    connector: Connector
    passwords: dict[str, str]  # each service IP's CARP password, by Vip.key
    sessions: dict[str, Session] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    # Servers that presented a host key other than the pinned one, with the message: the service audits them.
    hostkey_mismatches: list[tuple[Server, str]] = field(default_factory=list)

    @property
    def run_link(self) -> str:
        return links.run_page(self.run.pk)

    @property
    def nodes(self) -> list[Server]:
        return [s for s in self.servers if s.role == Server.Role.NODE]

    @property
    def probes(self) -> list[Server]:
        return [s for s in self.servers if s.role == Server.Role.PROBE]

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)

    @property
    def vips(self) -> tuple[Vip, ...]:
        """The cluster's service IPs (as the first node sees them; only unicast peers differ between nodes)."""
        return next(iter(self.targets.values())).vips if self.targets else ()

    @property
    def advbase(self) -> int:
        """The slowest service IP's advbase: what a wait for CARP must allow for."""
        return max((v.advbase for v in self.vips), default=1)
