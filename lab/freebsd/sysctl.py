"""sysctl(8) for the kern.* identity and the net.inet.carp.* tree that exists only while carp is loaded."""

from __future__ import annotations

import getopt
import re
from typing import Any

from . import carp
from .state import CARP_SYSCTL_DEFAULTS, Host, err, is_root, out

INT_RE = re.compile(r"^-?\d+$")


def _oids(host: Host, state: dict[str, Any]) -> dict[str, Any]:
    oids: dict[str, Any] = {
        "kern.ostype": "FreeBSD",
        "kern.osrelease": host.cfg["version"],
        "kern.hostname": host.cfg["name"],
    }
    if state["carp_loaded"]:
        for key in CARP_SYSCTL_DEFAULTS:
            if key == "dscp" and host.major < 12:
                continue
            oids["net.inet.carp." + key] = state["sysctl"][key]
    return oids


def sysctl(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "anqNe")
    except getopt.GetoptError:
        err("usage: sysctl [-bdehiNnoqTtWx] [ -B <bufsize> ] [-f filename] name[=value] ...")
        return 1
    flags = {o for o, _ in opts}
    state = host.read()
    oids = _oids(host, state)
    if "-a" in flags or not args:
        args = list(oids)
    rc = 0
    for arg in args:
        name, eq, value = arg.partition("=")
        matches = [k for k in oids if k == name or k.startswith(name + ".")]
        if not matches:
            if "-q" not in flags:
                err("sysctl: unknown oid '%s'" % name)
            rc = 1
            continue
        if not eq:
            for key in matches:
                if "-N" in flags:
                    out(key)
                elif "-n" in flags:
                    out(str(oids[key]))
                else:
                    out("%s: %s" % (key, oids[key]))
            continue
        if name not in oids or not name.startswith("net.inet.carp."):
            err("sysctl: oid '%s' is read only" % name)
            rc = 1
            continue
        if not INT_RE.match(value):
            err("sysctl: invalid integer '%s'" % value)
            rc = 1
            continue
        if not is_root():
            err("sysctl: %s=%s: Operation not permitted" % (name, value))
            rc = 1
            continue
        rc |= _set(host, name, int(value), flags)
    return rc


def _set(host: Host, name: str, value: int, flags: set[str]) -> int:
    key = name.rsplit(".", 1)[1]
    with host.locked() as state:
        before = state["sysctl"][key]
        # The demotion counter is special in carp(4): a write is added to the current value.
        after = before + value if key == "demotion" else value
        if key in ("allow", "preempt", "log") and value not in (0, 1):
            err("sysctl: %s=%d: Invalid argument" % (name, value))
            return 1
        state["sysctl"][key] = after
        if key in ("preempt", "demotion") and before != after:
            carp.restart_all(host, state)
        elif key == "allow" and before != after:  # carp_allow_sysctl: carp_sc_state for every vhid
            if after:
                carp.interface_up(host, state)
            else:
                carp.interface_down(host, state)
    if "-n" in flags:
        out(str(after))
    else:
        out("%s: %s -> %s" % (name, before, after))
    return 0
