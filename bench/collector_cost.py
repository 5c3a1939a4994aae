"""Benchmark: what the collector costs per followed node, and how fast a transition becomes an event row.

    sudo .venv/bin/python bench/collector_cost.py [--servers 120] [--seconds 60] [--database-url URL]

Its own lab (carpcol, 127.0.0.1 ports 24xxx, subnet 10.77.0.0/23 inside the lab's namespaces) and a scratch
carpweb. The servers are paired into clusters (vhid 1, 2, ...), their host keys pinned and their service IP
marked configured, so `manage.py carp_collect` follows every one of them: one SSH session per node, a heartbeat
every 2 s. Measured: the time until every node was heard, then over `--seconds` the collector's CPU, memory and
threads, and the node side (processes and memory per followed node in the lab's emulation); then transitions
written into 20 nodes' logs one after the other, each timed from the write to its row in the database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import SUBNET, carpweb, lab, make_clusters, percentile, process_stats, report

MARKS = {"sh": b"trap '' PIPE", "tail": b"\x00-n\x00+1\x00-F", "awk": b"$1 != e", "sshd": b"sshd: root"}


def node_side(servers: int) -> dict[str, object]:
    """The collector's processes inside the lab (sshd's session, sh, tail, awk): how many, and their memory."""
    counts = dict.fromkeys(MARKS, 0)
    rss_kb = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for name, mark in MARKS.items():
            if mark in cmd:
                counts[name] += 1
                rss_kb += int(next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS")), "0"))
                break
    return {"node_processes": counts, "node_rss_kb_per_node": round(rss_kb / servers)}


def wait_heard(servers: int, limit: float) -> float:
    from wizard.models import Server

    t0 = time.monotonic()
    while Server.objects.exclude(events_heard_at=None).count() < servers:
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"only {Server.objects.exclude(events_heard_at=None).count()} of {servers} heard")
        time.sleep(0.2)
    return time.monotonic() - t0


def transitions(world, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Write one transition line into a node's log (as devd's action does), time it to its event row."""
    from wizard.carp import transition_log
    from wizard.models import CarpEvent, Server

    latencies = []
    nodes = list(Server.objects.select_related("cluster").order_by("pk"))
    step = max(1, len(nodes) // count)
    for n, server in enumerate(nodes[::step][:count]):
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"bench {n + 1} {now} 1@em0 BACKUP -> MASTER (master timed out)"
        t0 = time.monotonic()
        world.exec(server.name, ["sh", "-c", f"mkdir -p /var/log/carpweb && echo '{line}' >> {transition_log.LOG}"],
                   check=True)
        while not CarpEvent.objects.filter(server=server, epoch="bench", seq=n + 1).exists():
            if time.monotonic() - t0 > 30:
                raise RuntimeError(f"{server.name}: no event row 30 s after the line was written")
            time.sleep(0.02)
        latencies.append(time.monotonic() - t0)
    return latencies


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--json")
    args = ap.parse_args()
    with lab("carpcol", 24000, servers=args.servers, subnet=SUBNET) as world, \
            carpweb(args.database_url) as site:
        from wizard.models import Cluster

        make_clusters(world, args.servers)
        collector = site.entry("collector")
        time.sleep(7)  # it has read the (empty) list of nodes to follow
        idle = process_stats(collector.pid)
        Cluster.objects.update(service_ip_configured=True)  # as after Configure: the collector follows them
        started = wait_heard(args.servers, limit=120)
        time.sleep(5)  # past the first sync and the burst of connections
        before, t0 = process_stats(collector.pid), time.monotonic()
        time.sleep(args.seconds)
        after = process_stats(collector.pid)
        cpu = (after["cpu_s"] - before["cpu_s"]) / (time.monotonic() - t0)
        latencies = transitions(world, 20)
        result: dict[str, object] = {
            "database": "postgresql" if args.database_url else "sqlite", "followed_nodes": args.servers,
            "all_heard_after_s": round(started, 1), "collector_cpu_percent": round(100 * cpu, 1),
            "collector_rss_mb_idle": round(idle["rss_mb"], 1), "collector_rss_mb": round(after["rss_mb"], 1),
            "collector_rss_mb_peak": round(after["peak_rss_mb"], 1), "collector_threads": after["threads"],
            "collector_rss_kb_per_node": round(1024 * (after["rss_mb"] - idle["rss_mb"]) / args.servers),
            **node_side(args.servers),
            "line_to_row_ms_p50": round(1000 * percentile(latencies, 0.5)),
            "line_to_row_ms_max": round(1000 * max(latencies)), "transitions_timed": len(latencies)}
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
