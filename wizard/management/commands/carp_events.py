"""manage.py carp_events CLUSTER [--since ISO-TIME]: the cluster's CARP transitions, one line each:
TIME NODE VHID@IF OLD -> NEW (REASON)."""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from wizard import selectors
from wizard.models import Cluster


class Command(BaseCommand):
    help = "Print a cluster's CARP transitions, oldest first."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("cluster")
        parser.add_argument("--since", default="", help="ISO time, e.g. 2026-11-25T03:00:00Z")

    def handle(self, *args, cluster: str, since: str, **options):  # type: ignore[no-untyped-def]
        found = Cluster.objects.filter(name=cluster).first()
        if found is None:
            raise CommandError(f"no cluster named {cluster!r}")
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        except ValueError:
            raise CommandError(f"--since: {since!r} is not an ISO time such as 2026-11-25T03:00:00Z") from None
        if start is not None and start.tzinfo is None:
            raise CommandError("--since: give a time zone, e.g. 2026-11-25T03:00:00Z")
        for e in selectors.carp_events(found, since=start):
            when = (e.node_time or e.received).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.stdout.write(f"{when} {e.node} {e.vhid}@{e.interface} {e.old_state} -> {e.new_state}"
                              + (f" ({e.reason})" if e.reason else ""))
