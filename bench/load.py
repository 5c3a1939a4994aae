"""Load: N locust clients watch run progress while runs proceed on lab clusters, all on this machine.

    sudo .venv/bin/python bench/load.py [--clusters 10] [--users 50] [--seconds 40] [--json out.json]

It builds its own lab (name carpload, 127.0.0.1 ports 26xxx), an embedded carpweb in a temporary folder
(SQLite + filesystem broker), gunicorn and a Celery worker, starts one setup run per cluster, runs locust
headless against 127.0.0.1 only (bounded in users and time), then checks every run's step rows in the
database: none lost, none twice, all finished.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from carpweb import processes, waiting  # noqa: E402 - after the path
from carpweb.processes import Child  # noqa: E402


def _wait_for_web(url: str, web: Child, limit: float = 90) -> None:
    """Until every gunicorn worker has booted and answers (a fixed sleep let the first requests of the load queue
    behind workers that were still importing Django, and counted that as the pages' latency): 20 answers in a row,
    spread over the workers by the kernel's accept queue."""
    answered = [0]

    def twenty_in_a_row() -> bool:
        if not web.running():
            raise waiting.TimedOut("the web exited")
        answered[0] = answered[0] + 1 if processes.answers(url)() else 0
        return answered[0] >= 20

    waiting.wait_until(twenty_in_a_row, limit, "20 answers in a row from the web", every=0.05)


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="carpweb-load."))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(CARPWEB_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="carpweb.settings", PYTHONUNBUFFERED="1")
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    from lab.topology import LabConfig
    from lab.world import Lab

    lab = Lab(LabConfig(name="carpload", base_port=26000, servers=2 * args.clusters))
    lab.up()
    procs: list[Child] = []
    try:
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.test import Client

        from wizard import services
        from wizard.carp.steps import Vip
        from wizard.models import Run, Step
        from wizard.plan import plan_for

        # The watchers share one logged-in session: 50 password hashes (PBKDF2, ~0.5 s of CPU each) at once would
        # measure the login, not the progress pages, on a 2-core machine that also runs the lab and the runs.
        loader = Client()
        loader.force_login(User.objects.create_superuser("loader", password="load-test-password-1"))
        session_id = loader.cookies["sessionid"].value
        key = Path(lab.key_path).read_text()
        clusters = []
        for i in range(args.clusters):
            cluster = services.cluster_save(cluster=None, data={
                "name": f"load-{i:02d}", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                "vip": f"192.0.2.{200 + i}", "vhid": i + 1, "interface": "em0", "configure_service_ip": True})
            rows = []
            for j in (1, 2):
                host = lab.host(f"server-{2 * i + j}")
                rows.append({"name": host.name, "address": host.address, "ssh_host": "127.0.0.1",
                             "ssh_port": host.ssh_port, "ssh_user": "root", "auth": "key", "secret": key,
                             "privilege": "root", "preferred_master": j == 1})
            services.servers_save(cluster=cluster, rows=rows)
            offers = services.host_keys_fetch(cluster=cluster)
            services.host_keys_pin(cluster=cluster, confirmed={o.server.pk: o.fingerprint for o in offers})
            clusters.append(cluster)
        # The Procfile's worker, with the prefork pool of 10 processes these figures were measured with.
        procs.append(Child("worker", processes.argv("worker", "-P", "prefork", "-c", str(args.clusters)),
                           data / "worker.log", env=env).start())
        web, url = processes.web("-w", "4", log=data / "web.log", env=env, limit=90)
        procs.append(web)
        _wait_for_web(url + "/login/", web)
        # And until the worker's processes have booted (importing Django in each is ~20 s of CPU here): the
        # load measures pages during runs, not during the worker's start.
        procs[0].wait_ready(processes.celery_ready(procs[0]), limit=120)
        time.sleep(3)  # its pool processes finish importing after the main process says ready
        runs = [services.run_start(cluster=c, kind="setup", actor_name="load") for c in clusters]
        t0 = time.monotonic()
        prefix = data / "locust"
        locust = subprocess.run(
            [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
             "-u", str(args.users), "-r", str(max(1, args.users // 5)), "-t", f"{args.seconds}s", "--host",
             url, "--csv", str(prefix), "--only-summary", "--stop-timeout", "5"],
            cwd=ROOT, env={**env, "CARPWEB_LOAD_RUNS": ",".join(str(r.pk) for r in runs),
                           "CARPWEB_LOAD_SESSION": session_id},
            capture_output=True, text=True, timeout=args.seconds + 120, check=False)
        with contextlib.suppress(waiting.TimedOut):  # the figures then show the unfinished runs
            waiting.wait_until(lambda: not Run.objects.filter(pk__in=[r.pk for r in runs],
                                                              status__in=["pending", "running"]).exists(),
                               120, "the runs to finish", every=0.5)
        runs_wall = time.monotonic() - t0
        stats = {row["Name"]: row for row in csv.DictReader(open(f"{prefix}_stats.csv"))}  # noqa: SIM115
        progress = stats.get("/runs/[id]/events/?format=fragments", {})
        failures = list(csv.DictReader(open(f"{prefix}_failures.csv")))  # noqa: SIM115
        server_errors = sum(int(f["Occurrences"]) for f in failures if "server error" in f["Error"])
        retried = sum(int(f["Occurrences"]) for f in failures if "sent again" in f["Error"])
        lost, duplicated, unfinished = 0, 0, 0
        for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
            keys = list(Step.objects.filter(run=run).values_list("server_name", "name"))
            duplicated += len(keys) - len(set(keys))
            plan = plan_for(Run.Kind.SETUP, configure_service_ip=True, vips=[Vip("em0", 1, ("x",), key="1")])
            expected = 2 * (1 + len(plan.node_steps)) + len(plan.cluster_rows)  # per node: connect + its steps
            lost += max(0, expected - len(set(keys)))
            unfinished += Step.objects.filter(run=run, status__in=["pending", "running"]).count()
        result = {
            "clusters": args.clusters, "users": args.users, "seconds": args.seconds,
            "requests": int(progress.get("Request Count", 0)),
            "failures": int(progress.get("Failure Count", 0)) - retried,
            "connections_broken_and_retried": retried,
            "server_errors": server_errors, "p50_ms": float(progress.get("50%", 0) or 0),
            "p95_ms": float(progress.get("95%", 0) or 0), "max_ms": float(progress.get("Max Response Time", 0) or 0),
            "rps": float(progress.get("Requests/s", 0) or 0), "runs_ok": Run.objects.filter(
                pk__in=[r.pk for r in runs], status="ok").count(),
            "runs_wall_s": round(runs_wall, 1), "lost_rows": lost, "duplicated_rows": duplicated,
            "unfinished_rows": unfinished, "failure_kinds": [f["Error"] for f in failures][:5],
            "locust_exit": locust.returncode,
            "failed_steps": [f"{s.run.cluster.name} {s.server_name} {s.name}: {s.message[:200]}" for s in
                             Step.objects.filter(run__in=runs, status="failed").select_related("run__cluster")][:10],
        }
        print(json.dumps(result, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(result))
        return result
    finally:
        for p in procs:
            p.stop(grace=20)
        lab.down()


if __name__ == "__main__":
    main()
