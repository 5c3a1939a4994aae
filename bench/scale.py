"""Scale: the audit page and chain check at 100k entries, the inventory at 1,000 clusters (scratch SQLite).

    .venv/bin/python bench/scale.py [--entries 100000] [--clusters 1000]
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
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--clusters", type=int, default=1000)
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
    from wizard.models import Cluster, Server

    t0 = time.perf_counter()
    with transaction.atomic():
        for i in range(args.entries):
            audit.record("bench.event", after={"n": i}, actor_name=f"user{i % 20}")
    print(f"wrote {args.entries} chained entries in {time.perf_counter() - t0:.1f} s")
    with transaction.atomic():
        for i in range(args.clusters):
            c = Cluster.objects.create(name=f"c{i:04d}", subnet="192.0.2.0/24", gateway="192.0.2.1",
                                       vip="192.0.2.100", healthy=i % 2 == 0)
            Server.objects.bulk_create([Server(cluster=c, name=f"s{j}", address=f"192.0.2.1{j}", ssh_host="h",
                                               carp_state="MASTER" if j == 1 else "BACKUP") for j in (1, 2)])
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    for label, url in [("audit page 1", "/audit/"), ("audit, filtered by user", "/audit/?user=user7"),
                       ("audit, last page", f"/audit/?page={args.entries // 50}"),
                       ("inventory page 1", "/"), ("inventory, degraded", "/?state=degraded"),
                       ("inventory, search", "/?q=c09")]:
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as q:
                t = time.perf_counter()
                assert client.get(url).status_code == 200
                times.append(time.perf_counter() - t)
        print(f"{label:28} median {sorted(times)[2] * 1000:.0f} ms, {len(q.captured_queries)} queries")
    t = time.perf_counter()
    ok, _, why = audit.verify()
    print(f"chain check over {args.entries} entries: {time.perf_counter() - t:.2f} s ({why})")


if __name__ == "__main__":
    main()
