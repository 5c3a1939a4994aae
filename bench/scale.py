"""Scale: the audit page and chain check at 1,000,000 entries, the inventory at 10,000 clusters (scratch SQLite).

    .venv/bin/python bench/scale.py [--entries 1000000] [--clusters 10000]

The entries are written in batches (each chained to the one before through audit.digest, as `record` does, so
the chain is intact), the clusters with two servers each; then each page is fetched 5 times (median), and the
chain is checked in full, from a checkpoint after 1,000 more entries, and with nothing new.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--clusters", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["CARPWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="carpweb-scale.")
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "carpweb.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    from wizard import audit
    from wizard.models import Cluster, Server, ServiceIP

    t0 = time.perf_counter()
    write_entries(args.entries)
    print(f"wrote {args.entries} chained entries in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    for start in range(0, args.clusters, 1000):
        with transaction.atomic():
            clusters = Cluster.objects.bulk_create([
                Cluster(name=f"c{i:05d}", subnet="192.0.2.0/24", gateway="192.0.2.1", interface="em0",
                        healthy=i % 2 == 0) for i in range(start, min(start + 1000, args.clusters))])
            ServiceIP.objects.bulk_create([ServiceIP(cluster=c, interface="em0", vhid=1, addresses=["192.0.2.100/32"],
                                                     search=" 192.0.2.100 ") for c in clusters])
            Server.objects.bulk_create([Server(cluster=c, name=f"s{j}", address=f"192.0.2.1{j}", ssh_host="h",
                                               carp_state="MASTER" if j == 1 else "BACKUP")
                                        for c in clusters for j in (1, 2)])
    print(f"wrote {args.clusters} clusters in {time.perf_counter() - t0:.1f} s")
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    for label, url in [("audit page 1", "/audit/"), ("audit, filtered by user", "/audit/?user=user7"),
                       ("audit, last page", f"/audit/?page={args.entries // 50}"),
                       ("inventory page 1", "/"), ("inventory, degraded", "/?state=degraded"),
                       ("inventory, search", "/?q=c09"), ("inventory, last page", f"/?page={args.clusters // 50}")]:
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as q:
                t = time.perf_counter()
                assert client.get(url).status_code == 200
                times.append(time.perf_counter() - t)
        print(f"{label:28} median {sorted(times)[2] * 1000:.0f} ms, {len(q.captured_queries)} queries")
    for label, full, more in [("full", True, 0), ("since the checkpoint, 1,000 new", False, 1000),
                              ("since the checkpoint, nothing new", False, 0)]:
        for i in range(more):
            audit.record("bench.event", after={"n": i})
        t = time.perf_counter()
        ok, _, why = audit.verify(full=full)
        print(f"chain check, {label}: {time.perf_counter() - t:.2f} s ({why})")
        assert ok


def write_entries(count: int, batch: int = 5000) -> None:
    """Chained entries in batches: the same content and digest as audit.record writes, without its per-entry
    transaction."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from wizard import audit
    from wizard.models import AuditEntry

    prev, start = "", timezone.now() - timedelta(days=365)
    for first in range(0, count, batch):
        rows = []
        for i in range(first, min(first + batch, count)):
            entry = AuditEntry(ts=start + timedelta(seconds=30 * i), actor_name=f"user{i % 20}",
                               action="bench.event", after={"n": i}, prev_hash=prev)
            entry.hash = prev = audit.digest(entry)
            rows.append(entry)
        with transaction.atomic():
            AuditEntry.objects.bulk_create(rows)

if __name__ == "__main__":
    main()
