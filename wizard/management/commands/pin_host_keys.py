"""manage.py pin_host_keys CLUSTER [--yes]: show each server's SSH host key fingerprint and pin it."""

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.models import Cluster


class Command(BaseCommand):
    help = "Show the servers' host key fingerprints and pin them after confirmation."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("cluster")
        parser.add_argument("--yes", action="store_true", help="pin without asking (for scripts)")

    def handle(self, *args, cluster: str, yes: bool, **options):  # type: ignore[no-untyped-def]
        c = Cluster.objects.filter(name=cluster).first()
        if c is None:
            raise CommandError(f"no cluster named {cluster!r}")
        offers = services.host_keys_fetch(cluster=c)
        for o in offers:
            state = "error" if o.error else (
                "pinned" if o.matches_pin else ("MISMATCH" if o.server.host_key else "new"))
            self.stdout.write(f"{o.server.name:20} {o.error or o.fingerprint}  [{state}]")
        failed = [o for o in offers if o.error]
        if failed:
            raise CommandError("cannot reach: " + ", ".join(o.server.name for o in failed))
        todo = {o.server.pk: o.fingerprint for o in offers if not o.server.host_key}
        if not todo:
            self.stdout.write("nothing new to pin")
            return
        if not yes and input("Pin these fingerprints? [y/N] ").strip().lower() != "y":
            raise CommandError("not pinned")
        try:
            pinned = services.host_keys_pin(cluster=c, confirmed=todo)
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
        self.stdout.write("pinned: " + ", ".join(pinned))
