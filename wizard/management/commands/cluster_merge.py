"""manage.py cluster_merge INTO FROM: fold a cluster that sits on the same servers into another."""

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.models import Cluster


class Command(BaseCommand):
    help = ("Move FROM's service IPs, runs, drills, events and notices into INTO and delete FROM (two clusters on "
            "the same servers, as carpweb made them before a cluster carried several service IPs). Nothing on the "
            "servers changes.")

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("into")
        parser.add_argument("source", metavar="from")

    def handle(self, *args, into: str, source: str, **options):  # type: ignore[no-untyped-def]
        clusters = {c.name: c for c in Cluster.objects.filter(name__in=[into, source])}
        for name in (into, source):
            if name not in clusters:
                raise CommandError(f"no cluster named {name!r}")
        try:
            sips = services.cluster_merge(into=clusters[into], source=clusters[source])
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"merged {source} into {into}: {len(sips)} service IPs")
