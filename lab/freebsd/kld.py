"""kldload, kldunload, kldstat, uname and freebsd-version, as FreeBSD prints them."""

from __future__ import annotations

import getopt

from .state import Host, err, is_root, out

KNOWN_MODULES = {"carp"}
KERNEL_FILES_11 = [(1, 20, "0xffffffff80200000", "2066f38", "kernel")]
KERNEL_FILES = [(1, 30, "0xffffffff80200000", "1f3e2d8", "kernel"),
                (2, 1, "0xffffffff82120000", "3378", "acpi_wmi.ko"),
                (3, 1, "0xffffffff82124000", "3220", "intpm.ko"),
                (4, 1, "0xffffffff82128000", "2178", "smbus.ko"),
                (5, 1, "0xffffffff8212b000", "4d20", "mac_ntpd.ko")]
CARP_ADDR, CARP_SIZE = "0xffffffff82140000", "7cc8"


def _module_name(arg: str) -> str:
    name = arg.rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".ko") else name


def kldload(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "nqv")
    except getopt.GetoptError:
        opts, args = [("?", "")], []
    flags = {o for o, _ in opts}
    if "?" in flags or not args:
        err("usage: kldload [-nqv] file ...")
        return 1
    rc = 0
    for arg in args:
        name = _module_name(arg)
        state = host.read()
        if name in KNOWN_MODULES and state["carp_loaded"]:
            if "-n" in flags:
                if "-v" in flags:
                    out("%s is already loaded" % arg)
                continue
            err("kldload: can't load %s: module already loaded or in kernel" % arg)
            rc = 1
            continue
        if not is_root():
            err("kldload: can't load %s: Operation not permitted" % arg)
            rc = 1
            continue
        if name not in KNOWN_MODULES:
            err("kldload: can't load %s: No such file or directory" % arg)
            rc = 1
            continue
        with host.locked() as state:
            state["carp_loaded"] = True
            state["carp_fileid"] = state["next_fileid"]
            state["carp_modid"] = state["next_modid"]
            state["next_fileid"] += 1
            state["next_modid"] += 1
            fileid = state["carp_fileid"]
        if "-v" in flags:
            out("Loaded %s, id=%d" % (arg, fileid))
    return rc


def kldunload(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "fvin")
    except getopt.GetoptError:
        opts, args = [("?", "")], []
    flags = {o for o, _ in opts}
    if "?" in flags or not args:
        err("usage: kldunload [-fv] -i id ...\n       kldunload [-fv] [-n] name ...")
        return 1
    rc = 0
    for arg in args:
        name = _module_name(arg)
        state = host.read()
        if name not in KNOWN_MODULES or not state["carp_loaded"]:
            err("kldunload: can't find file %s" % arg)
            rc = 1
            continue
        if not is_root():
            err("kldunload: can't unload file: Operation not permitted")
            rc = 1
            continue
        if state["vhids"]:
            err("kldunload: can't unload file: Device busy")
            rc = 1
            continue
        with host.locked() as state:
            fileid = state["carp_fileid"]
            state["carp_loaded"] = False
            state["carp_fileid"] = state["carp_modid"] = 0
        if "-v" in flags:
            out("Unloading %s, id=%d" % (arg, fileid))
    return rc


def kldstat(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "dhqvi:m:n:")
    except getopt.GetoptError:
        opts, args = [("?", "")], []
    flags = dict(opts)
    if "?" in flags or args:
        err("usage: kldstat [-dhqv] [-i id] [-n filename]\n       kldstat [-dq] [-m modname]")
        return 1
    state = host.read()
    quiet = "-q" in flags
    if "-m" in flags:
        mod = flags["-m"]
        if mod not in KNOWN_MODULES or not state["carp_loaded"]:
            if not quiet:
                err("kldstat: can't find module %s: No such file or directory" % mod)
            return 1
        if not quiet:
            out("Id  Refs Name")
            out("%3d %4d %s" % (state["carp_modid"], 1, mod))
        return 0
    files = list(KERNEL_FILES_11 if host.major < 12 else KERNEL_FILES)
    if state["carp_loaded"]:
        files.append((state["carp_fileid"], 1, CARP_ADDR, CARP_SIZE, "carp.ko"))
    if "-n" in flags:
        wanted = flags["-n"] if flags["-n"].endswith(".ko") or flags["-n"] == "kernel" else flags["-n"] + ".ko"
        files = [f for f in files if f[4] == wanted]
        if not files:
            if not quiet:
                err("kldstat: can't find file %s: No such file or directory" % flags["-n"])
            return 1
    if quiet:
        return 0
    if host.major < 12:
        out("Id Refs Address            Size     Name")
        for fid, refs, addr, size, name in files:
            out("%2d %4d %-18s %-8s %s" % (fid, refs, addr, size, name))
    else:
        out("Id Refs Address                Size Name")
        for fid, refs, addr, size, name in files:
            out("%2d %4d %s %8s %s" % (fid, refs, addr, size, name))
    return 0


def uname(host: Host, argv: list[str]) -> int:
    version = host.cfg["version"]
    fields = {
        "s": "FreeBSD", "n": host.cfg["name"], "r": version, "m": "amd64", "p": "amd64",
        "v": "FreeBSD %s releng/%s-n0-0000000000: Tue Jan  1 00:00:00 UTC 2025     "
             "root@releng1.nyi.freebsd.org:/usr/obj/usr/src/amd64.amd64/sys/GENERIC"
             % (version, version.split("-")[0]),
        "i": "GENERIC", "K": "1403000", "U": "1403000",
    }
    try:
        opts, args = getopt.getopt(argv, "aimnoprsvKU")
    except getopt.GetoptError:
        opts, args = [("?", "")], []
    if ("?", "") in opts or args:
        err("usage: uname [-abiKlmnoprsUv]")
        return 1
    wanted = [o[1] for o, _ in opts] or ["s"]
    if "a" in wanted:
        wanted = ["s", "n", "r", "v", "m"]
    order = "snrvmpiKU"
    out(" ".join(fields["s" if w == "o" else w] for w in sorted(set(wanted), key=lambda c: order.index(
        "s" if c == "o" else c))))
    return 0


def freebsd_version(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "kru")
    except getopt.GetoptError:
        opts, args = [("?", "")], []
    if ("?", "") in opts or args:
        err("usage: freebsd-version [-kru] [-j jail]")
        return 1
    version = host.cfg["version"]
    wanted = [o for o, _ in opts] or ["-u"]
    for flag in ("-k", "-r", "-u"):
        if flag in wanted:
            out(version)
    return 0
