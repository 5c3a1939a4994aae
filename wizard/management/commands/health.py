"""manage.py health: the same answer as GET /health/, as JSON; exit 1 when carpweb cannot run jobs.

For systemd (ExecStartPost / a timer), Kubernetes exec probes and load balancers that run a command.
"""

import json
import sys

from django.core.management.base import BaseCommand

from wizard.health import health_check, workers


class Command(BaseCommand):
    help = "Database, broker, answering workers and beat's last run; exit 1 when unhealthy."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        workers(fresh=True)  # a command asks now, not what a web process cached
        health = health_check()
        self.stdout.write(json.dumps(health.as_dict(), indent=1))
        if not health.healthy:
            sys.exit(1)
