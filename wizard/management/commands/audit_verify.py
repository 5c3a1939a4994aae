"""manage.py audit_verify [--since-checkpoint]: check the audit log's hash chain (all of it by default); exit 1 at
the first broken link."""

import sys

from django.core.management.base import BaseCommand

from wizard import audit


class Command(BaseCommand):
    help = "Verify the audit log's hash chain (edited, removed or reordered entries)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--since-checkpoint", action="store_true",
                            help="check only what was added since the last verified checkpoint (as the audit page)")

    def handle(self, *args, since_checkpoint: bool, **options):  # type: ignore[no-untyped-def]
        ok, broken, why = audit.verify(full=not since_checkpoint)
        if ok:
            self.stdout.write(f"audit log intact: {why}")
            return
        self.stderr.write(f"audit log BROKEN at #{broken}: {why}")
        sys.exit(1)
