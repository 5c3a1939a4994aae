"""Benchmark: a fleet at a time. Check on every cluster against Check on one, on scripts/start's worker settings.

    sudo .venv/bin/python bench/fleet.py [--servers 120] [--rounds 3] [--database-url URL --broker-url URL]

Its own lab (carpflt, 127.0.0.1 ports 25xxx, subnet 10.77.0.0/23 inside the lab's namespaces) with the servers
paired into clusters, and a scratch carpweb whose one worker runs exactly as `scripts/start` runs it (thread
pool, carpweb.supervise.WORKER_THREADS). Every cluster is set up (with its service IP) through the fleet of
runs; then, `--rounds` times each: Check on one cluster, Check on all (`fleet_start`, what `carp_run --all check`
and the inventory's button call), and the drift pass (`drift_check_all`). Each is timed from its start to the
end of its last run, with the CPU seconds the worker and the whole machine (the lab's 120 hosts included) spent
meanwhile; the worker's peak memory is read at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from harness import SUBNET, carpweb, lab, make_clusters, process_stats, report

from carpweb.waiting import wait_until


def wait_runs(pks: list[int], limit: float) -> float:
    """Seconds until every run ended (from now), failing loudly on a run that was not ok."""
    from wizard.models import Run

    t0 = time.monotonic()
    wait_until(lambda: not Run.objects.filter(pk__in=pks, status__in=Run.ACTIVE).exists(), limit,
               f"{len(pks)} run(s) to end")
    elapsed = time.monotonic() - t0
    bad = list(Run.objects.filter(pk__in=pks).exclude(status=Run.Status.OK).values_list("cluster__name", "summary"))
    if bad:
        raise RuntimeError(f"{len(bad)} run(s) not ok, e.g. {bad[:3]}")
    return elapsed


def machine_cpu_s() -> float:
    """CPU seconds the whole machine spent busy (every process: carpweb, the lab's sshd and commands, this)."""
    import os

    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # without idle and iowait


def timed(start: object, limit: float, worker_pid: int, cpu: list[tuple[float, float]] | None = None) -> float:
    """Wall time from start to the last run's end; appends (worker CPU s, machine CPU s) spent meanwhile."""
    t0, w0, m0 = time.monotonic(), process_stats(worker_pid)["cpu_s"], machine_cpu_s()
    pks = start()  # type: ignore[operator]
    wait_runs(pks, limit)
    if cpu is not None:
        cpu.append((process_stats(worker_pid)["cpu_s"] - w0, machine_cpu_s() - m0))
    return time.monotonic() - t0


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--broker-url", default="")
    ap.add_argument("--json")
    args = ap.parse_args()
    with lab("carpflt", 25000, servers=args.servers, subnet=SUBNET) as world, \
            carpweb(args.database_url, args.broker_url) as site:
        from carpweb.supervise import WORKER_THREADS
        from wizard import services
        from wizard.models import Cluster, Run

        make_clusters(world, args.servers)
        clusters = list(Cluster.objects.order_by("name"))
        worker = site.worker("-c", str(WORKER_THREADS))
        t0 = time.monotonic()
        setup = [services.run_start(cluster=c, kind=Run.Kind.SETUP).pk for c in clusters]
        wait_runs(setup, limit=900)
        setup_s = time.monotonic() - t0

        def fleet(kind: str | None) -> list[int]:
            """Check all (kind CHECK), or the drift pass (None): a run on every cluster, or the bench stops."""
            if kind is None:
                pks = services.drift_check_all()
            else:
                pks = [item.run.pk for item in services.fleet_start(kind=kind) if item.run is not None]
            if len(pks) != len(clusters):
                raise RuntimeError(f"the fleet started {len(pks)} run(s) for {len(clusters)} clusters")
            return pks

        one, every, drift = [], [], []
        cpu_one: list[tuple[float, float]] = []
        cpu_all: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            one.append(timed(lambda: [services.run_start(cluster=clusters[0], kind=Run.Kind.CHECK).pk], 120,
                             worker.pid, cpu_one))
            every.append(timed(lambda: fleet(Run.Kind.CHECK), 600, worker.pid, cpu_all))
            drift.append(timed(lambda: fleet(None), 600, worker.pid))
        stats = process_stats(worker.pid)
        log = (site.data / "worker.log").read_text()
        result: dict[str, object] = {
            "database": "postgresql" if args.database_url else "sqlite",
            "broker": args.broker_url.split(":")[0] if args.broker_url else "filesystem",
            "servers": args.servers, "clusters": len(clusters), "worker": f"threads, {WORKER_THREADS}",
            "setup_all_s": round(setup_s, 1),
            "check_one_s": [round(x, 2) for x in one], "check_all_s": [round(x, 2) for x in every],
            "drift_pass_s": [round(x, 2) for x in drift],
            "ratio_median": round(statistics.median(every) / statistics.median(one), 2),
            "check_one_cpu_s_worker_machine": [(round(w, 2), round(m, 2)) for w, m in cpu_one],
            "check_all_cpu_s_worker_machine": [(round(w, 2), round(m, 2)) for w, m in cpu_all],
            "worker_peak_rss_mb": round(stats["peak_rss_mb"], 1), "worker_threads_now": stats["threads"],
            "worker_errors": log.count(" ERROR/")}
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
