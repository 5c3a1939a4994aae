"""Benchmark: task start -> done of prepare+verify on 2 lab servers, against plain `ssh` with the same commands.

    sudo .venv/bin/python bench/prepare_verify.py [--runs 5]

It brings up its own lab (name carpbnch, ports 25xxx), an embedded-mode carpweb data dir and a real
Celery worker, and prints the medians and the ratio. Not a timed test: figures go to README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMANDS = ["sysrc -f /boot/loader.conf -n carp_load", "kldstat -q -m carp", "kldstat -q -m carp",
            "sysrc -f /boot/loader.conf -n carp_load", "sysctl -n net.inet.carp.allow"]


def plain_ssh(lab, hosts: list[str]) -> float:
    """Both hosts in parallel, one ssh process each, all commands in one string (LAB-NOTES' fastest)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(
        ["ssh", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-i", lab.key_path,
         "-p", str(lab.host(h).ssh_port), "root@127.0.0.1", "; ".join(COMMANDS)], stdout=subprocess.DEVNULL)
        for h in hosts]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="carpweb-bench.")
    os.environ.update(CARPWEB_DATA_DIR=data, DJANGO_SETTINGS_MODULE="carpweb.settings")
    from lab.topology import LabConfig
    from lab.world import Lab

    lab = Lab(LabConfig(name="carpbnch", base_port=25000))
    lab.up()
    worker = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from tests.helpers import lab_cluster
        from wizard import services
        from wizard.models import Run

        cluster = lab_cluster(lab, name="bench")
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "carpweb", "worker", "-l", "warning",
                                   "-c", "2"], cwd=ROOT, env=dict(os.environ))
        time.sleep(4)
        services.run_start(cluster=cluster, kind="prepare")  # first run makes the changes; then steady state
        time.sleep(3)
        carpweb, ssh = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            run = services.run_start(cluster=cluster, kind="prepare")
            while not Run.objects.get(pk=run.pk).done:
                time.sleep(0.005)
            run2 = services.run_start(cluster=cluster, kind="verify")
            while not Run.objects.get(pk=run2.pk).done:
                time.sleep(0.005)
            carpweb_total = time.perf_counter() - t0
            worker_time = sum((r.finished - r.started).total_seconds() for r in Run.objects.filter(
                pk__in=[run.pk, run2.pk]) if r.finished and r.started)
            carpweb.append((carpweb_total, worker_time))
            ssh.append(plain_ssh(lab, ["server-1", "server-2"]))
        med_total = statistics.median(t for t, _ in carpweb)
        med_task = statistics.median(w for _, w in carpweb)
        med_ssh = statistics.median(ssh)
        print(f"plain ssh, 2 hosts in parallel, {len(COMMANDS)} commands: median {med_ssh:.3f} s")
        print(f"carpweb prepare+verify, task start -> done (worker): median {med_task:.3f} s "
              f"(ratio {med_task / med_ssh:.2f}x)")
        print(f"carpweb incl. broker pick-up and polling from this process: median {med_total:.3f} s")
    finally:
        if worker:
            worker.terminate()
            worker.wait(20)
        lab.down()


if __name__ == "__main__":
    main()
