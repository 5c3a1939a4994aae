"""Real CARP for the emulated hosts: one ucarp process per vhid, driven by the emulated kernel state.

FreeBSD's carp(4) runs in the kernel; here ucarp speaks the protocol on the lab segment, and its
up/down scripts add or remove the VIP and record MASTER/BACKUP for ``ifconfig`` to show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from .state import CARP_MAXSKEW, Host


def link_up(host: Host) -> bool:
    try:
        with open("/sys/class/net/%s/operstate" % host.cfg["iface"]) as f:
            return f.read().strip() in ("up", "unknown")
    except OSError:
        return False


def _alive(pid: int, vhid: str) -> bool:
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"ucarp") and ("--vhid=%s" % vhid).encode() in argv


def effective_skew(state: dict[str, Any], vhid: str) -> int:
    """advskew plus the host-wide demotion counter, capped like the kernel's DEMOTE_ADVSKEW."""
    skew = state["vhids"][vhid]["advskew"] + state["sysctl"]["demotion"]
    return max(0, min(skew, CARP_MAXSKEW))


def status(host: Host, state: dict[str, Any], vhid: str) -> str:
    entry = state["vhids"][vhid]
    if not link_up(host) or not _alive(entry.get("pid", 0), vhid):
        return "INIT"
    try:
        with open(os.path.join(host.dir, "run", "vhid%s.state" % vhid)) as f:
            return f.read().strip() or "BACKUP"
    except FileNotFoundError:
        return "BACKUP"


def stop(host: Host, state: dict[str, Any], vhid: str) -> None:
    entry = state["vhids"].get(vhid, {})
    pid = entry.get("pid", 0)
    if _alive(pid, vhid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(pid, vhid):
                break
            time.sleep(0.005)
    entry["pid"] = 0
    # ucarp's -z runs the down script on exit; make sure the address is gone either way.
    _vip_del(host, entry)
    _write_state(host, vhid, "INIT")




def _vip_del(host: Host, entry: dict[str, Any]) -> None:
    for addr in entry.get("addrs", []):
        subprocess.run(["ip", "-4", "addr", "del", addr.split("/")[0] + "/32", "dev", host.cfg["iface"]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _write_state(host: Host, vhid: str, value: str) -> None:
    path = os.path.join(host.dir, "run", "vhid%s.state" % vhid)
    with open(path, "w") as f:
        f.write(value + "\n")


def start(host: Host, state: dict[str, Any], vhid: str) -> None:
    """(Re)start the speaker for a vhid with the current advbase, skew, password and preempt."""
    stop(host, state, vhid)
    entry = state["vhids"][vhid]
    if not state["carp_loaded"] or not state["sysctl"]["allow"] or not entry.get("addrs"):
        return
    if not link_up(host):
        return
    run = os.path.join(host.dir, "run")
    passfile = os.path.join(run, "vhid%s.pass" % vhid)
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        # ucarp keeps a NUL inside its 20-byte key, so it takes at most 19 bytes where FreeBSD takes 20;
        # every lab node cuts the same way, so elections still agree.
        f.write((entry.get("pass") or "").encode()[:19].decode("utf-8", "ignore"))
    _write_state(host, vhid, "BACKUP")
    argv = [
        "ucarp", "--interface=" + host.cfg["iface"], "--srcip=" + host.cfg["address"],
        "--vhid=" + vhid, "--passfile=" + passfile,
        "--addr=" + entry["addrs"][0].split("/")[0],
        "--advbase=%d" % entry["advbase"], "--advskew=%d" % effective_skew(state, vhid),
        "--upscript=" + os.path.join(host.dir, "carp-up.sh"),
        "--downscript=" + os.path.join(host.dir, "carp-down.sh"),
        "--xparam=" + vhid, "--shutdown",
        # ucarp checks the master-down timer only when poll() wakes, every advbase+skew/256 s; a
        # dead ratio of 2 puts its takeover inside FreeBSD's 3 x advbase + skew/256 window.
        "--deadratio=2",
    ]
    if state["sysctl"]["preempt"]:
        argv.append("--preempt")
    log = open(os.path.join(run, "ucarp-vhid%s.log" % vhid), "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
    entry["pid"] = proc.pid


def restart_all(host: Host, state: dict[str, Any]) -> None:
    for vhid in list(state["vhids"]):
        start(host, state, vhid)


def stop_all(host: Host, state: dict[str, Any]) -> None:
    for vhid in list(state["vhids"]):
        stop(host, state, vhid)


def force_backup(state: dict[str, Any], vhid: str) -> None:
    """``state backup``: ucarp's SIGUSR2 demotes a master to backup for a while."""
    pid = state["vhids"][vhid].get("pid", 0)
    if _alive(pid, vhid):
        os.kill(pid, signal.SIGUSR2)
