"""python -m lab: the lab's command line (up, down, status, reboot, exec, log, fault)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .faults import FAULT_KINDS
from .proc import LabError
from .topology import LabConfig
from .world import Lab, lab_available


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description="FreeBSD-like CARP hosts, reached over SSH.")
    p.add_argument("--name", default="carplab", help="lab name (namespace prefix), default carplab")
    p.add_argument("--base-port", type=int, default=22000, help="127.0.0.1 port = base + host offset in subnet")
    p.add_argument("--subnet", default="192.0.2.0/24")
    p.add_argument("--subnet6", default="2001:db8::/64", help="the lab segment's IPv6 prefix (documentation range)")
    p.add_argument("--gateway", default="192.0.2.1")
    p.add_argument("--client", default="192.0.2.50")
    p.add_argument("--first-server", default="192.0.2.11")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the lab (idempotent)")
    up.add_argument("--servers", type=int, default=2)
    up.add_argument("--key-store", metavar="DIR", help="reuse SSH keys kept here (made on first use)")
    up.add_argument("--shell", action="append", default=[], metavar="HOST:USER=SHELL",
                    help="a user's login shell, e.g. server-1:carpadm=/bin/csh (default: FreeBSD's: root /bin/csh "
                         "up to 13.x, /bin/sh from 14.0)")
    up.add_argument("--version", action="append", default=[], metavar="HOST=VERSION",
                    help="FreeBSD version of a host: 14, 13 or 11.2 (default 14.3-RELEASE)")
    sub.add_parser("down", help="remove every namespace, process and file of the lab")
    st = sub.add_parser("status", help="hosts, SSH endpoints, users and host key fingerprints")
    st.add_argument("--json", action="store_true")
    rb = sub.add_parser("reboot", help="drop runtime state and boot from the host's files")
    rb.add_argument("host")
    ex = sub.add_parser("exec", help="run a command inside a host")
    ex.add_argument("host")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    lg = sub.add_parser("log", help="every command the host's SSH sessions ran")
    lg.add_argument("host")
    ft = sub.add_parser("fault", help="inject a fault: " + ", ".join(FAULT_KINDS))
    ft.add_argument("host")
    ft.add_argument("kind", choices=FAULT_KINDS)
    ft.add_argument("args", nargs="*")
    return p


def _config(ns: argparse.Namespace, servers: int | None = None, versions: dict[str, str] | None = None,
            shells: dict[str, str] | None = None) -> LabConfig:
    return LabConfig(name=ns.name, subnet=ns.subnet, subnet6=ns.subnet6, gateway=ns.gateway, client=ns.client,
                     first_server=ns.first_server, base_port=ns.base_port, servers=servers or 2,
                     versions=versions or {}, shells=shells or {})


def _existing(ns: argparse.Namespace) -> Lab:
    """The lab as it was brought up (server count and versions come from its state file)."""
    lab = Lab(_config(ns))
    saved = lab._load().get("config")
    if saved:
        lab = Lab(LabConfig(**saved))
    return lab


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.cmd == "up":
            ok, why = lab_available()
            if not ok:
                print("lab: cannot start: " + why, file=sys.stderr)
                return 1
            versions = dict(v.split("=", 1) for v in ns.version)
            shells = dict(v.split("=", 1) for v in ns.shell)
            hosts = Lab(_config(ns, ns.servers, versions, shells)).up(key_store=ns.key_store)
            for h in hosts:
                print("%-10s %-14s ssh -p %d -i %s root@127.0.0.1   %s" % (
                    h.name, h.address, h.ssh_port, h.user("root")["key_path"], h.host_key_fingerprint))
            return 0
        lab = _existing(ns)
        if ns.cmd == "down":
            lab.down()
        elif ns.cmd == "status":
            hosts = lab.status()
            if ns.json:
                print(json.dumps({"lab": lab.config.name, "hosts": [dataclasses.asdict(h) for h in hosts]},
                                 indent=1))
            elif not hosts:
                print("lab %s is down" % lab.config.name)
            for h in [] if ns.json else hosts:
                print("%-10s %-8s %-14s 127.0.0.1:%-6d %-16s %s" % (
                    h.name, h.role, h.address, h.ssh_port, h.version, h.host_key_fingerprint))
        elif ns.cmd == "reboot":
            lab.reboot(ns.host)
        elif ns.cmd == "exec":
            argv_ = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
            res = lab.exec(ns.host, argv_)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            return res.returncode
        elif ns.cmd == "log":
            print("\n".join(lab.log(ns.host)))
        elif ns.cmd == "fault":
            lab.fault(ns.host, ns.kind, *ns.args)
    except LabError as e:
        print("lab: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
