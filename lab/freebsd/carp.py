"""Real CARP for the emulated hosts, driven by the emulated kernel state, with one of two speakers:

- native (the host's `cfg["speaker"]`): the lab's own carp(4) speaker (speaker.py), one daemon per host for all
  its vhids; the kernel state marks each vhid active or not and the daemon is told (SIGHUP) to read it again, so
  a change of advskew, advbase or demotion takes effect at the next advertisement without a restart;
- ucarp: one ucarp process per vhid, restarted on every change; its up/down scripts add or remove the VIP and
  record MASTER/BACKUP for ``ifconfig`` to show.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from typing import Any

from . import devd
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


def native(host: Host) -> bool:
    return host.cfg.get("speaker") == "native"


def _notify(host: Host) -> None:
    """Tell the host's speaker to read the kernel state again (it waits for the state's lock, so it reads the
    change whole once the command that made it has saved it)."""
    with contextlib.suppress(OSError, ValueError), open(os.path.join(host.dir, "run", "speaker.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGHUP)


def status(host: Host, state: dict[str, Any], vhid: str) -> str:
    entry = state["vhids"][vhid]
    running = entry.get("active") if native(host) else _alive(entry.get("pid", 0), vhid)
    if not link_up(host) or not running:
        return "INIT"
    try:
        with open(os.path.join(host.dir, "run", "vhid%s.state" % vhid)) as f:
            return f.read().strip() or "BACKUP"
    except FileNotFoundError:
        return "BACKUP"


def stop(host: Host, state: dict[str, Any], vhid: str, why: str = "") -> None:
    """Stop the vhid's speaker: for good (`why` says why: the vhid goes INIT) or to start it again at once."""
    entry = state["vhids"].get(vhid, {})
    if native(host):
        if why:
            entry["active"] = False
            transition(host, vhid, "INIT", why)
            _notify(host)
        return
    pid = entry.get("pid", 0)
    if why:  # ucarp's shutdown hook would report BACKUP first; carp(4) goes straight to INIT
        with open(_stopped_path(host, vhid), "w") as f:
            f.write(why + "\n")
    if _alive(pid, vhid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(pid, vhid):
                break
            time.sleep(0.005)
    entry["pid"] = 0
    # ucarp's -z runs the down script on exit; make sure the address is gone either way.
    _vip_del(host, entry)
    if why:
        transition(host, vhid, "INIT", why)

def _vip_del(host: Host, entry: dict[str, Any]) -> None:
    for addr in entry.get("addrs", []):
        subprocess.run(["ip", "-4", "addr", "del", addr.split("/")[0] + "/32", "dev", host.cfg["iface"]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _state_path(host: Host, vhid: str) -> str:
    return os.path.join(host.dir, "run", "vhid%s.state" % vhid)


def _stopped_path(host: Host, vhid: str) -> str:
    return os.path.join(host.dir, "run", "vhid%s.stopped" % vhid)


def speaker_event(host: Host, vhid: str, new: str, reason: str) -> None:
    """What ucarp's up/down hooks report; ignored for a vhid that was stopped (it is INIT until started)."""
    if not os.path.exists(_stopped_path(host, vhid)):
        transition(host, vhid, new, reason)


def transition(host: Host, vhid: str, new: str, reason: str) -> None:
    """A state change as carp(4) makes it: the kernel's `carp:` line in /var/log/messages, then devd's
    `system=CARP subsystem=VHID@IF type=STATE` event. No line and no event when the state did not change."""
    iface = host.cfg["iface"]
    with open(os.path.join(host.dir, "run", "events.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(_state_path(host, vhid)) as f:
                old = f.read().strip() or "INIT"
        except FileNotFoundError:
            old = "INIT"
        if old == new:
            return
        with open(_state_path(host, vhid), "w") as f:
            f.write(new + "\n")
        host.kernel_log("carp: %s@%s: %s -> %s (%s)" % (vhid, iface, old, new, reason))
        devd.notify(host, "CARP", "%s@%s" % (vhid, iface), new)


def start(host: Host, state: dict[str, Any], vhid: str) -> None:
    """(Re)start the speaker for a vhid with the current advbase, skew, password and preempt (the native speaker
    is only told to read them again)."""
    if native(host):
        entry = state["vhids"][vhid]
        entry["active"] = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_stopped_path(host, vhid))
        _notify(host)
        return
    stop(host, state, vhid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_stopped_path(host, vhid))
    entry = state["vhids"][vhid]
    if not state["carp_loaded"] or not state["sysctl"]["allow"] or not entry.get("addrs"):
        return
    if not link_up(host):
        return
    run = os.path.join(host.dir, "run")
    passfile = os.path.join(run, "vhid%s.pass" % vhid)
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        # ucarp keeps a NUL inside its 20-byte key, as FreeBSD's ifconfig does (strlcpy into CARP_KEY_LEN):
        # both use at most 19 bytes of the password.
        f.write((entry.get("pass") or "").encode()[:19].decode("utf-8", "ignore"))
    transition(host, vhid, "BACKUP", "initialization complete")  # nothing when it was BACKUP already
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


def stop_all(host: Host, state: dict[str, Any], why: str) -> None:
    for vhid in list(state["vhids"]):
        stop(host, state, vhid, why)


def _demote(host: Host, state: dict[str, Any], adj: int, reason: str) -> None:
    """carp_demote_adj: the host-wide demotion counter moves, and the kernel says so."""
    state["sysctl"]["demotion"] += adj
    host.kernel_log("carp: demoted by %d to %d (%s)" % (adj, state["sysctl"]["demotion"], reason))


def interface_down(host: Host, state: dict[str, Any]) -> None:
    """carp_sc_state with the link down (or net.inet.carp.allow=0): every vhid INIT ("hardware interface down")
    and, once per vhid (its sc_suppress), the demotion raised by ifdown_demotion_factor."""
    for vhid, entry in state["vhids"].items():
        stop(host, state, vhid, "hardware interface down")
        if not entry.get("suppress"):
            entry["suppress"] = True
            _demote(host, state, state["sysctl"]["ifdown_demotion_factor"], "interface down")


def interface_up(host: Host, state: dict[str, Any]) -> None:
    """carp_sc_state with the link back: each vhid starts again (INIT -> BACKUP, "initialization complete") and
    gives back the demotion it took."""
    for vhid, entry in state["vhids"].items():
        if entry.pop("suppress", False):
            _demote(host, state, -state["sysctl"]["ifdown_demotion_factor"], "interface up")
        start(host, state, vhid)


def force(host: Host, state: dict[str, Any], vhid: str, wanted: str) -> None:
    """``ifconfig IF vhid N state backup|master``: the native speaker applies it once, as carp_ioctl does."""
    entry = state["vhids"][vhid]
    entry["force"], entry["force_seq"] = wanted, int(entry.get("force_seq", 0)) + 1
    _notify(host)


def force_backup(state: dict[str, Any], vhid: str) -> None:
    """``state backup``: ucarp's SIGUSR2 demotes a master to backup for a while."""
    pid = state["vhids"][vhid].get("pid", 0)
    if _alive(pid, vhid):
        os.kill(pid, signal.SIGUSR2)
