"""Benchmark: what the lab's carp(4) speaker costs per vhid, idle (a master advertising every second, a backup
listening), and its failover and handover figures.

    sudo .venv/bin/python bench/speaker_cost.py [--vhids 1,50] [--seconds 30]

Its own two-server lab (carpspk, 127.0.0.1 ports 25xxx). For each count of vhids, server-1 is MASTER and server-2
BACKUP of every vhid; the speakers' CPU is read from /proc over `--seconds`.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(
    __file__))))

from carpweb import waiting  # noqa: E402
from lab.topology import LabConfig  # noqa: E402
from lab.world import Lab  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def speaker_pid(lab: Lab, host: str) -> int:
    with open(f"{lab.hostdir(host)}/run/speaker.pid") as f:
        return int(f.read())


def configure(lab: Lab, count: int) -> None:
    for host, skew in (("server-1", 0), ("server-2", 100)):
        lab.exec(host, ["kldload", "-n", "carp"], check=True)
        lab.exec(host, ["sysctl", "net.inet.carp.preempt=1"], check=True)
        for vhid in range(1, count + 1):
            lab.exec(host, ["ifconfig", "em0", "inet", "vhid", str(vhid), "advskew", str(skew), "pass", "bench",
                            "alias", f"192.0.2.{100 + vhid}/32"], check=True)


def masters(lab: Lab, host: str) -> int:
    return lab.exec(host, ["ifconfig", "em0"]).stdout.count("carp: MASTER")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vhids", default="1,50")
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    lab = Lab(LabConfig(name="carpspk", base_port=25000, speaker="native"))
    lab.up()
    try:
        for count in [int(c) for c in args.vhids.split(",")]:
            for info in lab.status():
                lab.reset_host(info.name)
            configure(lab, count)
            waiting.wait_until(lambda: masters(lab, "server-1") >= count, 20,  # noqa: B023 - used at once
                               f"server-1 to be MASTER of {count} vhids", every=0.2)
            pids = {h: speaker_pid(lab, h) for h in ("server-1", "server-2")}
            before = {h: cpu_seconds(p) for h, p in pids.items()}
            time.sleep(args.seconds)
            used = {h: cpu_seconds(p) - before[h] for h, p in pids.items()}
            for host, seconds in used.items():
                role = "MASTER" if host == "server-1" else "BACKUP"
                print(f"{count:4d} vhids, {role:6s}: {100 * seconds / args.seconds:.2f} % of a core "
                      f"({1000 * seconds / args.seconds / count:.2f} ms of CPU per vhid per second)")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
