"""manage.py carp_run CLUSTER KIND [NODE] [--wait]: the wizard's runs, from a shell.

Exit status 0 only when every step is ok or already done.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.models import Cluster, Run, Step
from wizard.plan import status_label


class Command(BaseCommand):
    help = "Start a run on a cluster (the same Celery run the wizard starts)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("cluster")
        parser.add_argument("kind", choices=[k for k, _ in Run.Kind.choices])
        parser.add_argument("node", nargs="?", default="", help="the node, for maintenance-on/off")
        parser.add_argument("--confirm", action="store_true", help="allow every node into maintenance")
        parser.add_argument("--wait", action="store_true", help="print each step as it ends; wait for the result")
        parser.add_argument("--timeout", type=float, default=900)

    def handle(self, *args, cluster: str, kind: str, node: str, confirm: bool, wait: bool, timeout: float,  # type: ignore[no-untyped-def]
               **options):
        c = Cluster.objects.filter(name=cluster).first()
        if c is None:
            raise CommandError(f"no cluster named {cluster!r}")
        try:
            run = services.run_start(cluster=c, kind=kind, target=node, confirm=confirm)
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"run {run.pk} ({kind}) started on {c.name}")
        if not wait:
            return
        shown: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run.refresh_from_db()
            ended = run.steps.exclude(status__in=Step.UNFINISHED).exclude(pk__in=shown)
            for step in ended.order_by("finished", "pk"):
                shown.add(step.pk)
                label = status_label(step.status, step.phase)
                self.stdout.write(f"{step.where:12} {step.phase:9} {step.name:16} {label:12} {step.message}")
            if run.done:
                self.stdout.write(f"run {run.pk}: {run.status} ({run.summary})")
                drill = run.drills.first()
                if drill is not None:
                    outage = "not measured" if drill.outage_s is None else f"{drill.outage_s:.2f} s"
                    self.stdout.write(f"drill: outage {outage}, bound {drill.bound_s:.2f} s "
                                      f"(3 x advbase + advskew/256), takeover "
                                      f"{drill.takeover_s if drill.takeover_s is None else round(drill.takeover_s, 2)}"
                                      f" s, failback {'ok' if drill.failback_ok else 'FAILED'}")
                if run.status != Run.Status.OK:
                    raise CommandError(f"run {run.pk} {run.status}")
                return
            time.sleep(0.2)
        raise CommandError(f"run {run.pk} did not finish within {timeout:g} s")
