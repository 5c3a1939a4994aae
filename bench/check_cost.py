"""Profile: what one Check costs carpweb itself, without SSH and without threads competing for the GIL.

    .venv/bin/python bench/check_cost.py [--checks 200] [--top 25] [--database-url URL]

A scratch carpweb (embedded SQLite, or a fresh PostgreSQL database beside URL) with one two-node cluster over
the fake FreeBSD hosts of tests/fakes.py (no network: what is left is carpweb's own work), configured once; then
`--checks` Checks run one after another in this process exactly as the worker's task runs them
(services.run_execute). It prints the CPU milliseconds per Check (this process: the worker's share), the SQL
statements per Check by kind, and cProfile's top functions by cumulative and own time.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database_url: str) -> None:
    os.environ["CARPWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="carpweb-check-cost.")
    os.environ.pop("DATABASE_URL", None)
    if database_url:
        from harness import _fresh_postgres

        os.environ["DATABASE_URL"] = _fresh_postgres(database_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "carpweb.settings"
    import logging

    import django

    django.setup()
    from django.core.management import call_command

    logging.disable(logging.INFO)  # a line per run would be measured too

    call_command("migrate", verbosity=0)


def main() -> None:  # noqa: C901
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sql", action="store_true", help="also print every SQL statement of one Check")
    ap.add_argument("--callees", default="", help="also print what the functions matching this call")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--parallel", type=int, default=0,
                    help="also: this many clusters Checked at once on 64 threads, as the worker carries them")
    ap.add_argument("--lab", type=int, default=0, help="instead: this many clusters on a lab of their own (root), "
                    "Checked at once over real SSH in this process, cold and then warm")
    args = ap.parse_args()
    setup(args.database_url)
    if args.lab:
        return over_ssh(args.lab)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.fakes import FakeWorld
    from wizard import services
    from wizard.models import Cluster, Run, Server

    world = FakeWorld()

    def make(name: str, port: int) -> Cluster:
        """A configured two-node cluster over the fake hosts (every cluster the same two: their CARP state is
        one, and each cluster's Check finds it healthy)."""
        cluster = services.cluster_save(cluster=None, data={
            "name": name, "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "vip": "192.0.2.100", "vhid": 1,
            "advbase": 1, "interface": "em0", "configure_service_ip": True}, carp_password="bench-pass")
        rows = [{"name": f"server-{i + 1}", "address": f"192.0.2.{11 + i}", "ssh_host": f"127.0.0.{i + 1}",
                 "ssh_port": port, "ssh_user": "root", "auth": "password", "secret": "ssh-pw", "privilege": "root",
                 "preferred_master": i == 0} for i in range(2)]
        services.servers_save(cluster=cluster, rows=rows)
        Server.objects.filter(cluster=cluster).update(host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake",
                                                      host_key_fingerprint="SHA256:fake")
        if not world.hosts:
            for row in rows:
                world.add(str(row["name"]), str(row["address"]))
        run = services.run_start(cluster=cluster, kind=Run.Kind.CONFIGURE)
        assert services.run_execute(run_id=run.pk, connector=world.connect).status == Run.Status.OK
        return cluster

    cluster = make("web", 2200)

    def check() -> Run:
        run = services.run_start(cluster=cluster, kind=Run.Kind.CHECK)
        return services.run_execute(run_id=run.pk, connector=world.connect)

    for _ in range(5):  # warm: caches, compiled templates, first queries
        check()
    with CaptureQueriesContext(connection) as queries:
        run = check()
    assert run.status == Run.Status.OK, run.summary
    kinds = collections.Counter(re.match(r"\s*(\w+)", q["sql"]).group(1).upper()  # type: ignore[union-attr]
                                for q in queries.captured_queries)
    tables = collections.Counter(m.group(1) for q in queries.captured_queries
                                 for m in [re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', q["sql"])] if m)
    profile = cProfile.Profile()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profile.enable()
    for _ in range(args.checks):
        check()
    profile.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu1 = time.process_time()  # the same without the profiler's own overhead
    for _ in range(args.checks):
        check()
    bare = time.process_time() - cpu1
    if args.parallel:
        parallel(args.parallel, [cluster, *[make(f"web{i}", 2300 + i) for i in range(1, args.parallel)]],
                 world.connect)
    print(f"database: {connection.vendor}; {args.checks} Checks of a 2-node cluster, one after another")
    print(f"CPU per Check: {1000 * bare / args.checks:.1f} ms ({1000 * bare / args.checks / 2:.1f} ms per node); "
          f"under cProfile {1000 * cpu / args.checks:.1f} ms, wall {1000 * wall / args.checks:.1f} ms")
    print(f"SQL statements per Check: {len(queries.captured_queries)} {dict(kinds)}")
    print(f"  by table: {dict(tables.most_common())}")
    if args.sql:
        for q in queries.captured_queries:
            print("   ", q["sql"][:230])
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        print(out.getvalue().split("\n\n", 1)[-1][:6000])
    if args.callees:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_callees(args.callees)
        print(out.getvalue()[:8000])


def over_ssh(n: int) -> None:
    """n clusters of the lab's hosts Checked at once in this process through the real SSH path (the pool)."""
    from harness import SUBNET, lab, make_clusters

    from wizard import services, sshpool
    from wizard.models import Cluster, Run

    with lab("carpcost", 22000, servers=2 * n, subnet=SUBNET) as world:
        make_clusters(world, 2 * n)
        clusters = list(Cluster.objects.order_by("name"))
        parallel(n, clusters, None, kind=Run.Kind.SETUP, label="setups")
        for label in ("cold", "warm", "warm", "warm"):
            if label == "cold":
                sshpool.reset()
            parallel(n, clusters, None, label=f"Checks ({label})", profile=False)
        parallel(n, clusters, None, label="Checks (warm)")
        del services


def parallel(n: int, clusters: list[Any], connector: Any, kind: str = "check", label: str = "Checks",
             profile: bool = True) -> None:
    """Check `n` clusters at once on 64 threads (the worker's pool), timed with yappi's CPU clock per function
    when it is installed."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import close_old_connections, connection

    from wizard import services
    from wizard.models import Run

    def one(cluster: Any) -> str:
        close_old_connections()
        try:
            run = services.run_start(cluster=cluster, kind=kind)
            if connector is None:
                return services.run_execute(run_id=run.pk).status
            return services.run_execute(run_id=run.pk, connector=connector).status
        finally:
            connection.close()

    try:
        import yappi
    except ImportError:
        yappi = None
    if not profile:
        yappi = None
    for rounds in range(2 if yappi is not None else 1):
        profiling = yappi is not None and rounds == 1
        if profiling:
            yappi.set_clock_type("cpu")
            yappi.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(one, clusters))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        assert results == [Run.Status.OK] * n, results
        print(f"{n} {label} at once{' (under yappi)' if profiling else ''}: CPU per run {1000 * cpu / n:.1f} ms, "
              f"wall {wall:.2f} s")
    if yappi is not None:
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.sort("ttot")
        stats.print_all(columns={0: ("name", 80), 1: ("ncall", 9), 2: ("tsub", 8), 3: ("ttot", 8)})


if __name__ == "__main__":
    main()
