"""manage.py carp_run CLUSTER KIND [NODE] [--wait] and carp_run --all KIND [--wait]: the wizard's runs, from a
shell.

Exit status 0 only when every step is ok or already done (with --all: every run ok, and no cluster busy).
"""

import time

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.models import Cluster, Run, Step
from wizard.plan import status_label
from wizard.services.fleet import FLEET_KINDS, FleetItem, fleet_start


class Command(BaseCommand):
    help = "Start a run on a cluster (the same Celery run the wizard starts)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("cluster", help="the cluster (with --all: the kind)")
        parser.add_argument("kind", nargs="?", default="", help=", ".join(k for k, _ in Run.Kind.choices))
        parser.add_argument("node", nargs="?", default="", help="the node, for maintenance-on/off")
        parser.add_argument("--to", default="", dest="to", help="handover: the node that takes every service IP")
        parser.add_argument("--all", action="store_true", dest="every",
                            help=f"run KIND ({' or '.join(FLEET_KINDS)}) on every cluster it applies to")
        parser.add_argument("--confirm", action="store_true", help="allow every node into maintenance")
        parser.add_argument("--wait", action="store_true", help="print each step as it ends; wait for the result")
        parser.add_argument("--timeout", type=float, default=900)

    def handle(self, *args, cluster: str, kind: str, node: str, confirm: bool, wait: bool, timeout: float,  # type: ignore[no-untyped-def]
               every: bool, to: str = "", **options):
        if every:
            if kind:
                raise CommandError("with --all, give only the kind: carp_run --all check")
            return self.fleet(cluster, wait, timeout)
        if kind not in Run.Kind.values:
            raise CommandError(f"choose the kind of run: {', '.join(Run.Kind.values)}")
        c = Cluster.objects.filter(name=cluster).first()
        if c is None:
            raise CommandError(f"no cluster named {cluster!r}")
        try:
            run = services.run_start(cluster=c, kind=kind, target=to or node, confirm=confirm)
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
                drill = run.drills.first()
                if drill is not None and drill.kind == drill.Kind.HANDOVER:
                    for p in drill.probes:  # one line per address, then the usual result
                        lost = "not measured" if p.get("sent") is None else f"{p['lost']} of {p['sent']} probes lost"
                        self.stdout.write(f"{p['address']}: {lost}")
                self.stdout.write(f"run {run.pk}: {run.status} ({run.summary})")
                if drill is not None and drill.kind == drill.Kind.DRILL:
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

    def fleet(self, kind: str, wait: bool, timeout: float) -> None:
        """Start KIND everywhere it applies; with --wait, one line per cluster as each run ends, then a total."""
        try:
            items = fleet_start(kind=kind)
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
        started = {item.run.pk: item for item in items if item.run is not None}
        for item in items:
            if item.run is None:
                self.stdout.write(f"{item.cluster.name:24} {'busy' if item.busy else 'skipped':8} {item.reason}")
        self.stdout.write(f"{kind} started on {len(started)} cluster(s)")
        busy = sum(item.busy for item in items)
        if not wait:
            if busy:
                raise CommandError(f"{busy} cluster(s) busy with another run")
            return
        ended = self.follow(started, timeout)
        counts = {status: sum(r.status == status for r in ended) for status in Run.Status.values}
        total = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no run"
        skipped = len(items) - len(started) - busy
        self.stdout.write(f"total: {len(started)} run(s): {total}; {busy} busy; {skipped} skipped")
        if len(ended) < len(started):
            raise CommandError(f"{len(started) - len(ended)} run(s) did not finish within {timeout:g} s")
        if busy or counts[Run.Status.OK] != len(started):
            raise CommandError("not every cluster's run was ok")

    def follow(self, started: dict[int, FleetItem], timeout: float) -> list[Run]:
        ended: list[Run] = []
        waiting = set(started)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for run in Run.objects.filter(pk__in=waiting, status__in=Run.FINISHED).select_related("cluster"):
                waiting.discard(run.pk)
                ended.append(run)
                seconds = (run.finished - run.started).total_seconds() if run.finished and run.started else 0.0
                self.stdout.write(f"{run.cluster.name:24} {run.status:8} {seconds:6.1f} s  {run.summary}")
            time.sleep(0.2)
        return ended
