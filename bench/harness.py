"""What the benches share: a lab of their own, a scratch carpweb (embedded, or PostgreSQL + Redis), and its
processes (Celery worker, web), all on this machine; only 127.0.0.1 and the lab's namespaces are reached."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from carpweb import processes  # noqa: E402 - after the path

BIN = Path(sys.executable).parent


def _fresh_postgres(url: str) -> str:
    """A new, empty database beside the one named in `url` (dropped first if a bench left one)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    bench_db = f"{name}_carpweb_bench"
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{bench_db}"')
    return f"{base}/{bench_db}"


@dataclass
class Carpweb:
    """A scratch carpweb: data dir, environment, and the processes started for it (carpweb.processes)."""

    data: Path
    env: dict[str, str]
    procs: list[processes.Child] = field(default_factory=list)

    def spawn(self, name: str, *argv: str) -> processes.Child:
        """Any command (a profiler's wrapper around a worker, say), its output in DATA/<name>.log."""
        return self._keep(processes.Child(name, list(argv), self.data / f"{name}.log", env=self.env).start())

    def entry(self, name: str, *extra: str) -> processes.Child:
        """The Procfile's `name`, with `extra` arguments after its own."""
        return self.spawn(name, *processes.argv(name, *extra))

    def worker(self, *extra: str) -> processes.Child:
        """The Procfile's worker, once it says it is ready."""
        return self._ready(self.entry("worker", *extra))

    def worker_with(self, *argv: str) -> processes.Child:
        """A Celery worker started by `argv` (a profiler's wrapper, say), once it says it is ready."""
        return self._ready(self.spawn("worker", *argv))

    def _ready(self, child: processes.Child) -> processes.Child:
        try:
            return child.wait_ready(processes.celery_ready(child), limit=60)
        except processes.StartFailed as e:
            self.procs.remove(child)
            raise RuntimeError(str(e)) from None

    def web(self, workers: int = 1) -> tuple[processes.Child, str]:
        child, url = processes.web("-w", str(workers), "--graceful-timeout", "2", log=self.data / "web.log",
                                   env=self.env)
        return self._keep(child), url

    def _keep(self, child: processes.Child) -> processes.Child:
        self.procs.append(child)
        return child

    def stop_process(self, child: processes.Child) -> None:
        """Stop one of the processes started for it (a worker to be started again cold)."""
        child.stop(grace=20)
        self.procs.remove(child)

    def stop(self) -> None:
        for child in self.procs:
            child.terminate()
        deadline = time.monotonic() + 20
        for child in self.procs:
            child.kill(deadline)


@contextlib.contextmanager
def carpweb(database_url: str = "", broker_url: str = "") -> Iterator[Carpweb]:
    """Django set up in this process on a scratch database; the processes started by the caller are stopped."""
    data = Path(tempfile.mkdtemp(prefix="carpweb-bench."))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(CARPWEB_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="carpweb.settings", PYTHONUNBUFFERED="1")
    if database_url:
        env["DATABASE_URL"] = _fresh_postgres(database_url)
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    site = Carpweb(data, env)
    try:
        yield site
    finally:
        site.stop()


@contextlib.contextmanager
def lab(name: str, base_port: int, servers: int = 2, subnet: str = "192.0.2.0/24") -> Iterator[object]:
    from lab.topology import LabConfig
    from lab.world import Lab

    gateway = subnet.split("/")[0].rsplit(".", 1)[0] + ".1"
    world = Lab(LabConfig(name=name, base_port=base_port, servers=servers, subnet=subnet, gateway=gateway,
                          client=subnet.split("/")[0].rsplit(".", 1)[0] + ".50",
                          first_server=subnet.split("/")[0].rsplit(".", 1)[0] + ".11"))
    world.up()
    try:
        yield world
    finally:
        world.down()


SUBNET = "10.77.0.0/23"  # the big benches' lab segment (inside the lab's namespaces only)


def make_clusters(world, servers: int) -> list[int]:  # type: ignore[no-untyped-def]
    from wizard import services
    from wizard.models import Cluster

    key = Path(world.key_path).read_text()
    hosts = {h.name: h for h in world.status()}  # once: each status() reads every host's key fingerprint
    names = [f"server-{i}" for i in range(1, servers + 1)]
    for n in range(servers // 2):
        pair = names[2 * n: 2 * n + 2]
        cluster = services.cluster_save(cluster=None, data={
            "name": f"c{n + 1:03d}", "subnet": SUBNET, "gateway": "10.77.0.1", "vip": f"10.77.1.{n + 1}",
            "vip_prefix": 32, "vhid": n + 1, "advbase": 1, "interface": "em0", "master_advskew": 0,
            "configure_service_ip": True}, carp_password="")
        services.servers_save(cluster=cluster, rows=[{
            "name": host, "address": hosts[host].address, "ssh_host": "127.0.0.1",
            "ssh_port": hosts[host].ssh_port, "ssh_user": "root", "auth": "key", "secret": key,
            "privilege": "root", "preferred_master": i == 0} for i, host in enumerate(pair)])
        offers = services.host_keys_fetch(cluster=cluster)
        services.host_keys_pin(cluster=cluster, confirmed={o.server.pk: o.fingerprint for o in offers})
    return list(Cluster.objects.values_list("pk", flat=True))


def process_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) and memory of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / ticks, "sys_s": int(fields[12]) / ticks,
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024, "threads": int(status["Threads"])}


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def report(result: dict[str, object], json_path: str | None) -> dict[str, object]:
    """Print a bench's figures, and keep them in `--json PATH` when asked."""
    import json

    print(json.dumps(result, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps(result))
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")
