"""Entry point of every emulated command: dispatch on the program name, and the lab's boot/halt hooks."""

from __future__ import annotations

import os
import sys
import time

from . import carp, devd, ifconfig, kld, net, rcfile, sysctl
from .state import Host, err, fresh_kernel

COMMANDS = {
    "uname": kld.uname,
    "freebsd-version": kld.freebsd_version,
    "kldload": kld.kldload,
    "kldunload": kld.kldunload,
    "kldstat": kld.kldstat,
    "sysrc": rcfile.sysrc,
    "sysctl": sysctl.sysctl,
    "ifconfig": ifconfig.ifconfig,
    "route": net.route,
    "netstat": net.netstat,
    "ping": net.ping,
    "ping6": net.ping6,
    "service": devd.service,
}
# What carp(4) logs as the reason of the transitions ucarp reports.
CARP_REASONS = {"MASTER": "master timed out", "BACKUP": "more frequent advertisement received"}
# With the `linux` fault a host answers as plain Debian: these exist there, the rest do not.
LINUX_BINARIES = {"uname": "/bin/uname", "sysctl": "/sbin/sysctl", "ping": "/bin/ping"}


def halt(host: Host) -> None:
    """Power off: every runtime change (module, sysctls, vhids and their speakers) is lost."""
    with host.locked() as state:
        carp.stop_all(host, state, "system shutdown")
        for alias in state.get("aliases", []):
            ifconfig._ip("addr", "del", alias, "dev", host.cfg["iface"])
        state.clear()
        state.update(fresh_kernel())


def boot(host: Host) -> None:
    """What FreeBSD's loader and rc do with the three files, in that order; devd starts with its rules."""
    devd.load(host)
    loader = rcfile.parse(rcfile.read_file("/boot/loader.conf"))
    if loader.get("carp_load", "").upper() == "YES":
        kld.kldload(host, ["-n", "carp"])
    for line in rcfile.read_file("/etc/sysctl.conf").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            sysctl.sysctl(host, ["-q", line])
    rc = rcfile.parse(rcfile.read_file("/etc/rc.conf"))
    iface = host.cfg["iface"]
    n = 0
    while "ifconfig_%s_alias%d" % (iface, n) in rc:
        ifconfig.configure(host, iface, rc["ifconfig_%s_alias%d" % (iface, n)].split() + ["alias"])
        n += 1


def flood(megabytes: int) -> None:
    """The `flood` fault: MEGABYTES of output, then a line without end, until the reader goes (or 10 minutes)."""
    line = b"x" * 1023 + b"\n"
    out = sys.stdout.buffer
    try:
        for _ in range(megabytes * 1024):
            out.write(line)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            out.write(b"y" * 65536)
    except (BrokenPipeError, OSError):
        pass
    os._exit(1)


def run(name: str) -> None:
    host = Host()
    args = sys.argv[1:]
    if name == "carplab":
        action = args[0] if args else ""
        if action == "boot":
            boot(host)
        elif action == "halt":
            halt(host)
        elif action == "link":
            ifconfig.link_set(host, args[1] == "up")
        elif action == "carp-event":  # ucarp's up/down scripts: this host became MASTER or BACKUP
            carp.speaker_event(host, args[1], args[2], CARP_REASONS[args[2]])
        else:
            err("carplab: unknown action %r" % action)
            sys.exit(2)
        sys.exit(0)
    flooding = host.faults().get("flood")
    if flooding and flooding[0] == name:
        flood(int(flooding[1]))
    if host.faults().get("linux"):
        binary = LINUX_BINARIES.get(name)
        if binary:
            os.execv(binary, [name, *args])
        err("sh: 1: %s: not found" % name)
        sys.exit(127)
    try:
        code = COMMANDS[name](host, args)
    except BrokenPipeError:
        code = 1
    sys.stdout.flush()
    sys.exit(code)
