"""manage.py carp_collect: follow every CARP node's transition log and record each transition once.

Runs until stopped (scripts/start runs it; in production one per deployment: `collector:` in the Procfile).
"""

import signal

from django.core.management.base import BaseCommand

from wizard import services
from wizard.execution.collector import Callbacks, Collector


def callbacks() -> Callbacks:
    return Callbacks(
        line=lambda server_id, line: services.event_record(server_id=server_id, line=line),
        trouble=lambda server_id, why, seconds: services.node_trouble(server_id=server_id, why=why, seconds=seconds),
        heard=lambda server_id: services.node_heard(server_id=server_id),
        settle=lambda cluster_id, heard: services.cluster_evaluate(cluster_id=cluster_id, heard=heard),
        nodes=services.followed_nodes,
        periodic=services.flapping_calm_check)


class Command(BaseCommand):
    help = "Follow the CARP nodes' transition logs (devd, installed by Configure) until stopped."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--seconds", type=float, help="stop after this long (default: run until stopped)")

    def handle(self, *args, seconds: float | None, **options):  # type: ignore[no-untyped-def]
        collector = Collector(callbacks())
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: collector.stopping.set())
        self.stdout.write("carp_collect: following the CARP nodes' transition logs")
        try:
            collector.run(seconds)
        finally:
            collector.stop()
