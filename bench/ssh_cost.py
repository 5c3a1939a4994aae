"""What SSH itself costs carpweb's side: a paramiko handshake, a command on a warm connection, an idle connection.

    sudo .venv/bin/python bench/ssh_cost.py [--connections 40]

Its own 2-host lab (carpssh, 127.0.0.1 ports 21xxx); this process's CPU (user + system, paramiko's threads
included) while it opens the connections, runs `true` once on each, then holds them idle for 5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from harness import lab


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=40)
    args = ap.parse_args()
    from wizard.ssh import Connection, Endpoint

    with lab("carpssh", 21000, servers=2) as world:
        eps = []
        for host in ("server-1", "server-2"):
            with open(os.path.join(world.hostdir(host), "ssh_host_ed25519_key.pub")) as f:  # type: ignore[attr-defined]
                kind, blob = f.read().split()[:2]
            with open(world.key_path) as f:  # type: ignore[attr-defined]
                secret = f.read()
            eps.append(Endpoint(host, "127.0.0.1", world.host(host).ssh_port, "root", "key", secret, "root",  # type: ignore[attr-defined]
                                f"{kind} {blob}"))
        n = args.connections
        t0 = cpu()
        conns = [Connection(eps[i % 2]) for i in range(n)]
        t1 = cpu()
        for c in conns:
            assert c.run("true").ok
        t2 = cpu()
        time.sleep(5)
        t3 = cpu()
        for c in conns:
            c.close()
    print(f"handshake (connect, key exchange, pinned host key, public-key auth): {1000 * (t1 - t0) / n:.2f} ms CPU")
    print(f"one command on a warm connection: {1000 * (t2 - t1) / n:.2f} ms CPU")
    print(f"an idle connection: {1000 * (t3 - t2) / n / 5:.2f} ms CPU per second")


if __name__ == "__main__":
    main()
