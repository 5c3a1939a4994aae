"""manage.py audit_verify: check the audit log's hash chain; exit 1 at the first broken link."""

import sys

from django.core.management.base import BaseCommand

from wizard import audit


class Command(BaseCommand):
    help = "Verify the audit log's hash chain (edited, removed or reordered entries)."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        ok, broken, why = audit.verify()
        if ok:
            self.stdout.write(f"audit log intact: {why}")
            return
        self.stderr.write(f"audit log BROKEN at #{broken}: {why}")
        sys.exit(1)
