"""manage.py cluster_import FILE.json [--merge]: create or update a cluster, its servers and its service IPs,
validated like the wizard (wizard.documents, which the API's cluster writes use too). Today's one-VIP shape (vip,
vhid, advbase, password) is read as one service IP."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.documents import DocumentInvalid, cluster_document_save


class Command(BaseCommand):
    help = "Create or update a cluster from a JSON file (shape in README); --merge adds the service IPs to the " \
           "cluster that already holds these servers."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument("--merge", action="store_true",
                            help="the servers are another cluster's nodes: add these service IPs to that cluster")

    def handle(self, *args, file: str, merge: bool = False, **options):  # type: ignore[no-untyped-def]
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot read {file}: {e}") from None
        try:
            cluster = cluster_document_save(data, by_name=True, merge=merge, key_files=True)
        except DocumentInvalid as e:
            raise CommandError("; ".join(e.lines(e.errors))) from None
        except services.ServiceError as e:
            hint = "" if merge or "already a node of cluster" not in str(e) else \
                " (or import with --merge to add these service IPs to it)"
            raise CommandError(f"{e}{hint}") from None
        sips = cluster.service_ips.count()
        self.stdout.write(f"cluster {cluster.name} saved with {cluster.servers.count()} servers and {sips} service "
                          f"IP{'s' if sips != 1 else ''}")
