"""Benchmark: carpweb's Check of a fleet beside the floor (OpenSSH) and beside Ansible, in one run, on one lab.

    sudo .venv/bin/python bench/peers.py [--clusters 60] [--rounds 3] [--json PATH]

Needs ansible-core (`.venv/bin/pip install -e '.[bench]'`). Its own lab (carppeer, 127.0.0.1 ports 23xxx, subnet
10.77.0.0/23 inside the lab's namespaces) with 2 × clusters FreeBSD-like hosts, paired into clusters, set up by a
scratch carpweb (embedded mode) whose one worker runs exactly as `scripts/start` runs it. Then, each round:

- carpweb, cold: a new worker process (no warm connection), then `manage.py carp_run --all check --wait`;
- carpweb, warm: the same command again on that worker (its connections kept from the cold pass);
- the floor: OpenSSH with ControlMaster/ControlPersist (masters opened before, so warm) sending every node the
  exec request carpweb's Check sends it (the framed batch of reads, as `sh -c '…'`), all nodes at once, then the
  ping of the service IP from each cluster's backup, as Check's prober does;
- Ansible: ad hoc `-m raw` with the same exec request on every node (forks 64, its default ControlPersist, warmed
  by an unmeasured `raw true` just before), then the ping on the backups.

Every host key is pinned for both peers (a known_hosts file, StrictHostKeyChecking=yes), as carpweb pins them.
Each pass is timed from its start to its end, with the CPU seconds the whole machine spent (the lab's hosts
included) and the CPU seconds of the side's own processes: carpweb's worker, or the peer's ssh clients, ssh
masters and ansible processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BIN, ROOT, SUBNET, carpweb, lab, make_clusters, process_stats, report
from yappi_worker import CLEAR, DUMP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import machine_cpu_s, wait_runs  # noqa: E402


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pids: list[int], field: str = "cpu_s") -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, KeyError):  # ended, or a zombie
            total += process_stats(pid)[field]
    return total


def pids_with(text: str) -> list[int]:
    """Processes whose command line mentions `text` (the peers' ssh masters, found by their control path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Measure:
    """Wall time, machine CPU, and the CPU of the side's own processes: those `pids` lists, plus, with `children`,
    the processes this bench started and waited for (the peers' ssh clients and ansible). carpweb's side is its
    worker; the `carp_run` command that starts the runs and waits for them is reported apart (`cli_cpu_s`)."""

    def __init__(self, pids: object, children: bool) -> None:
        self.pids, self.children = pids, children

    def __enter__(self) -> Measure:
        self.t0, self.m0, self.c0 = time.monotonic(), machine_cpu_s(), children_cpu_s()
        self.p0 = {pid: cpu_of([pid]) for pid in self.pids()}  # type: ignore[operator]
        self.s0 = {pid: cpu_of([pid], "sys_s") for pid in self.pids()}  # type: ignore[operator]
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.t0
        self.machine = machine_cpu_s() - self.m0
        self.waited = children_cpu_s() - self.c0
        own = self.waited if self.children else 0.0
        self.own_sys = 0.0  # of the listed processes: in the kernel (syscalls, thread switches)
        for pid in self.pids():  # type: ignore[operator]
            own += cpu_of([pid]) - self.p0.get(pid, 0.0)
            self.own_sys += cpu_of([pid], "sys_s") - self.s0.get(pid, 0.0)
        self.own = own

    def row(self) -> dict[str, float]:
        row = {"wall_s": round(self.wall, 2), "machine_cpu_s": round(self.machine, 2), "own_cpu_s": round(self.own, 2),
               "own_sys_cpu_s": round(self.own_sys, 2)}
        if not self.children:
            row["cli_cpu_s"] = round(self.waited, 2)
        return row


def exec_requests(clusters: list[Any]) -> tuple[str, dict[str, str], dict[str, str]]:
    """What carpweb's Check sends: the same framed read on every node, and each cluster's ping of its service IP
    from its backup (the node that is not the preferred master, as Check's prober picks it when all is well)."""
    from wizard.carp import cluster as carp_cluster
    from wizard.carp import facts
    from wizard.carp.shell import remote_command
    from wizard.plan import targets

    reads, pings, prober = "", {}, {}
    for cluster in clusters:
        servers = list(cluster.servers.order_by("-preferred_master", "name"))
        found = targets(cluster, servers, "bench", list(cluster.service_ips.all()))
        target = found[servers[0].name]
        commands = [f.command() for f in carp_cluster.reads(target)]
        reads = remote_command(facts.batch_command(commands, secrets.token_hex(8)), "root")
        ping = [facts.Ping(h, 1).command() for v in target.vips for h in v.hosts]
        one = ping[0] if len(ping) == 1 else facts.batch_command(ping, secrets.token_hex(8))
        pings[servers[1].name] = remote_command(one, "root")
        prober[cluster.name] = servers[1].name
    return reads, pings, prober


class Peers:
    """The floor's OpenSSH and Ansible's settings: one known_hosts with every pinned key, the lab's client key."""

    def __init__(self, world: object, work: Path) -> None:
        self.world, self.work = world, work
        self.hosts = {h.name: h for h in world.status()}  # type: ignore[attr-defined]
        self.servers = sorted((n for n in self.hosts if n.startswith("server-")), key=lambda n: int(n.split("-")[1]))
        self.known = work / "known_hosts"
        lines = []
        for name in self.servers:
            with open(os.path.join(world.hostdir(name), "ssh_host_ed25519_key.pub")) as f:  # type: ignore[attr-defined]
                kind, blob = f.read().split()[:2]
            lines.append(f"[127.0.0.1]:{self.hosts[name].ssh_port} {kind} {blob}")
        self.known.write_text("\n".join(lines) + "\n")
        self.key = world.key_path  # type: ignore[attr-defined]
        self.cp = work / "cp"
        self.cp.mkdir()

    def ssh(self, name: str, *extra: str) -> list[str]:
        return ["ssh", "-p", str(self.hosts[name].ssh_port), "-i", self.key, "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", f"ControlPath={self.cp}/%C", "-o", "ConnectTimeout=10", *extra, "root@127.0.0.1"]

    def masters_up(self) -> None:
        procs = [subprocess.Popen(self.ssh(n, "-o", "ControlMaster=yes", "-o", "ControlPersist=900", "-fN"))
                 for n in self.servers]
        if any(p.wait(60) for p in procs):
            raise RuntimeError("an OpenSSH master did not start")

    def masters_down(self) -> None:
        for n in self.servers:
            subprocess.run(self.ssh(n, "-O", "exit"), capture_output=True, check=False)

    def floor(self, reads: str, pings: dict[str, str], prober: dict[str, str]) -> None:
        """Every node's read at once over its master, then each cluster's ping from its backup."""
        def one(name: str, command: str) -> None:
            res = subprocess.run([*self.ssh(name, "-o", "ControlMaster=no"), command], capture_output=True)
            if res.returncode != 0:
                raise RuntimeError(f"floor: {name} exited {res.returncode}: {res.stderr[-300:]!r}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            list(pool.map(lambda n: one(n, reads), self.servers))
            list(pool.map(lambda n: one(n, pings[n]), prober.values()))

    def inventory(self, pings: dict[str, str]) -> Path:
        path = self.work / "inventory.ini"
        rows = ["[nodes]"]
        for name in self.servers:
            extra = f" ping_cmd={_ini(pings[name])}" if name in pings else ""
            rows.append(f"{name} ansible_host=127.0.0.1 ansible_port={self.hosts[name].ssh_port}{extra}")
        rows += ["[backups]", *sorted(pings), "[all:vars]", "ansible_user=root",
                 f"ansible_ssh_private_key_file={self.key}",
                 f"ansible_ssh_common_args='-o UserKnownHostsFile={self.known} -o StrictHostKeyChecking=yes'"]
        path.write_text("\n".join(rows) + "\n")
        return path

    def ansible_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.work / "acp"), ANSIBLE_HOST_KEY_CHECKING="True",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "atmp"), ANSIBLE_HOME=str(self.work / "ahome"),
                   ANSIBLE_FORKS="64", ANSIBLE_NOCOLOR="1")
        return env

    def ansible(self, inventory: Path, pattern: str, argument: str) -> None:
        res = subprocess.run([str(BIN / "ansible"), pattern, "-i", str(inventory), "-m", "raw", "-a", argument,
                              "-f", "64"], capture_output=True, text=True, env=self.ansible_env())
        ok = len(re.findall(r"\| (CHANGED|SUCCESS) \| rc=0", res.stdout))
        wanted = len(self.servers) if pattern == "nodes" else len(re.findall(r"\S+", pattern)) or 0
        if res.returncode != 0 or (pattern == "nodes" and ok != wanted):
            raise RuntimeError(f"ansible {pattern}: exit {res.returncode}, {ok} ok: {res.stdout[-500:]}"
                               f"{res.stderr[-500:]}")


def _ini(value: str) -> str:
    """A value for an INI inventory line: Ansible reads it as a Python literal when quoted."""
    return repr(value)


def worker_connections(pid: int) -> int:
    """The worker's established TCP connections to the lab's SSH ports (its warm connections)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "( dport >= :23000 and dport < :24000 )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(f"pid={pid}," in line for line in out.splitlines())


def carp_run_all(site: object) -> None:
    res = subprocess.run([str(BIN / "python"), "manage.py", "carp_run", "--all", "check", "--wait"], cwd=ROOT,
                         env=site.env, capture_output=True, text=True)  # type: ignore[attr-defined]
    if res.returncode != 0:
        raise RuntimeError(f"carp_run --all check: exit {res.returncode}: {res.stdout[-800:]}{res.stderr[-800:]}")


def runs_span(since: float) -> dict[str, float]:
    """Where a `carp_run --all check --wait` spent its time: from the command's start to its first run's row
    (Python and Django starting), the rows of all runs written (fleet_start), and from the first Check's start to
    the last one's end (the runs)."""
    import datetime

    from django.db.models import Max, Min

    from wizard.models import Run

    after = datetime.datetime.fromtimestamp(since, tz=datetime.UTC)
    span = Run.objects.filter(kind=Run.Kind.CHECK, created__gte=after).aggregate(
        c0=Min("created"), c1=Max("created"), a=Min("started"), b=Max("finished"))
    return {"startup_s": round(span["c0"].timestamp() - since, 2),
            "fleet_start_s": round((span["c1"] - span["c0"]).total_seconds(), 2),
            "runs_s": round((span["b"] - span["a"]).total_seconds(), 2)}


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--profile", help="run the worker under yappi (slower: its figures are not the bench's) and "
                    "write its functions by CPU during the last warm pass to PATH")
    args = ap.parse_args()
    if not (BIN / "ansible").exists():
        raise SystemExit("bench/peers.py needs ansible-core: .venv/bin/pip install -e '.[bench]'")
    servers = 2 * args.clusters
    work = Path(tempfile.mkdtemp(prefix="carpweb-peers."))
    with lab("carppeer", 23000, servers=servers, subnet=SUBNET) as world, carpweb() as site:
        from carpweb.supervise import WORKER_THREADS
        from wizard import services
        from wizard.models import Cluster, Run

        make_clusters(world, servers)
        clusters = list(Cluster.objects.order_by("name"))
        worker_args = ("-c", str(WORKER_THREADS))
        start_worker = (lambda: site.worker(*worker_args)) if not args.profile else (
            lambda: site.worker_with(str(BIN / "python"), str(ROOT / "bench" / "yappi_worker.py"), args.profile,
                                     "-A", "carpweb", "worker", "-l", "info", "-n", "worker@%h", "-P", "threads",
                                     *worker_args))
        worker = start_worker()
        wait_runs([services.run_start(cluster=c, kind=Run.Kind.SETUP).pk for c in clusters], limit=900)
        reads, pings, prober = exec_requests(clusters)
        peers = Peers(world, work)
        peers.masters_up()
        inventory = peers.inventory(pings)
        acp = str(work / "acp")
        rows: dict[str, list[dict[str, float]]] = {"carpweb_cold": [], "carpweb_warm": [], "floor": [],
                                                   "ansible": []}
        spans: dict[str, list[dict[str, float]]] = {"carpweb_cold": [], "carpweb_warm": []}
        held: dict[str, list[int]] = {"carpweb_cold": [], "carpweb_warm": []}  # the worker's SSH sockets after
        idle_cpu: list[float] = []  # the worker's CPU seconds per second with nothing to do (broker polling, timers)
        for _ in range(args.rounds):
            site.stop_process(worker)
            worker = start_worker()
            idle = cpu_of([worker.pid])
            time.sleep(5)
            idle_cpu.append(round((cpu_of([worker.pid]) - idle) / 5, 3))
            for kind in ("carpweb_cold", "carpweb_warm"):
                since = time.time()
                profiled = args.profile and kind == "carpweb_warm" and _ == args.rounds - 1
                if profiled:
                    worker.send_signal(CLEAR)  # from here
                with Measure(lambda w=worker: [w.pid], children=False) as m:
                    carp_run_all(site)
                if profiled:
                    worker.send_signal(DUMP)
                    time.sleep(3)
                rows[kind].append(m.row())
                spans[kind].append(runs_span(since))
                held[kind].append(worker_connections(worker.pid))
            with Measure(lambda: pids_with(str(peers.cp)), children=True) as m:
                peers.floor(reads, pings, prober)
            rows["floor"].append(m.row())
            peers.ansible(inventory, "nodes", "true")  # warm: its ControlPersist masters (60 s) open now
            with Measure(lambda: pids_with(acp), children=True) as m:
                peers.ansible(inventory, "nodes", reads)
                peers.ansible(inventory, "backups", " {{ ping_cmd }}")  # a leading "{" would be read as JSON
            rows["ansible"].append(m.row())
        peers.masters_down()
        med = {k: {f: round(statistics.median(r[f] for r in v), 2) for f in v[0]} for k, v in rows.items()}
        result: dict[str, object] = {
            "clusters": args.clusters, "nodes": servers, "rounds": args.rounds, "worker": f"threads, {WORKER_THREADS}",
            "rows": rows, "median": med, "runs_span_s": spans, "worker_idle_cpu_s_per_s": idle_cpu,
            "worker_ssh_connections_after": held,
            "worker_ms_per_node": {k: round(1000 * med[k]["own_cpu_s"] / servers, 1)
                                   for k in ("carpweb_cold", "carpweb_warm")},
            "warm_vs_floor": round(med["carpweb_warm"]["wall_s"] / med["floor"]["wall_s"], 2),
            "warm_vs_ansible": round(med["carpweb_warm"]["wall_s"] / med["ansible"]["wall_s"], 2),
            "worker_errors": (site.data / "worker.log").read_text().count(" ERROR/")}
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
