"""Faults on demand: link, sshd (stopped, hung, new host key), delay/loss, a rogue CARP speaker, Linux.

Each fault is undone by `clear`. Everything stays inside the host's namespaces or the lab's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from typing import Any, Protocol

from . import files
from .layout import Layout
from .proc import LabError, alive, kill_group, sh
from .topology import HostSpec, LabConfig

FAULT_KINDS = ("link-down", "link-up", "sshd-stop", "sshd-start", "sshd-hang", "hostkey-change",
               "netem", "rogue-carp", "linux", "flood", "multicast-off", "clear")


class Lab(Protocol):
    """What a fault needs of the lab (lab.world.Lab)."""

    config: LabConfig
    layout: Layout

    def ns(self, host: str) -> str: ...
    def hostdir(self, host: str) -> str: ...
    def _spec(self, host: str) -> HostSpec: ...
    def _info(self, host: str) -> dict[str, Any]: ...
    def _update(self, host: str, **values: Any) -> None: ...
    def _enter(self, info: dict[str, Any]) -> list[str]: ...
    def _start_relay(self, spec: HostSpec) -> int: ...
    def restart_sshd(self, spec: HostSpec, info: dict[str, Any]) -> None: ...
    def end_sessions(self, host: str) -> None: ...
    def exec(self, host: str, argv: list[str], timeout: float = 60, check: bool = False,
             input: str | None = None) -> subprocess.CompletedProcess[str]: ...


def apply(lab: Lab, host: str, kind: str, *args: str) -> None:
    """Inject (or with `clear`, undo) one fault on one host."""
    if kind not in FAULT_KINDS:
        raise LabError("unknown fault %r; one of: %s" % (kind, ", ".join(FAULT_KINDS)))
    spec, info = lab._spec(host), lab._info(host)
    hd = lab.hostdir(host)
    if kind == "link-down":
        lab.exec(host, ["carplab", "link", "down"], check=True)
    elif kind == "link-up":
        lab.exec(host, ["carplab", "link", "up"], check=True)
    elif kind == "sshd-stop":
        lab.end_sessions(host)
        kill_group(info["relay"])
        kill_group(info["sshd"])
        sh("pkill", "-9", "-f", "EXEC:" + os.path.join(hd, "relay.sh"), check=False)
        lab._update(host, relay=0, sshd=0, sshd_stopped=True)
    elif kind == "sshd-start":
        _restore_sshd(lab, spec, info)
    elif kind == "sshd-hang":
        lab.end_sessions(host)  # a server whose sshd hangs holds no working connection either
        kill_group(info["sshd"])
        hang = subprocess.Popen(
            [*lab._enter(info), "socat", "TCP-LISTEN:22,bind=%s,reuseaddr,fork" % spec.address,
             "SYSTEM:sleep 3600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.2)
        lab._update(host, sshd=0, hang=hang.pid, sshd_stopped=True)
    elif kind == "hostkey-change":
        key = os.path.join(hd, "ssh_host_ed25519_key")
        if not os.path.exists(key + ".orig"):
            shutil.copy2(key, key + ".orig")
            shutil.copy2(key + ".pub", key + ".pub.orig")
        os.unlink(key)
        os.unlink(key + ".pub")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@" + host, "-f", key)
        lab.end_sessions(host)  # a new host key means a reinstalled server: its old connections are gone
        lab.restart_sshd(spec, lab._info(host))
    elif kind == "netem":
        if len(args) != 2:
            raise LabError("netem takes DELAY_MS LOSS_PCT")
        delay, loss = int(args[0]), float(args[1])
        res = sh("ip", "netns", "exec", lab.ns(host), "tc", "qdisc", "replace", "dev", "em0", "root",
                 "netem", "delay", "%dms" % delay, "loss", "%g%%" % loss, check=False)
        if res.returncode != 0:
            # No sch_netem in this kernel: delay and lose on the host's SSH path instead.
            with open(os.path.join(hd, "run", "netem"), "w") as f:
                f.write("%d %g\n" % (delay, loss))
    elif kind == "rogue-carp":
        _rogue(lab, host, spec, info, args)
    elif kind == "linux":
        files.write_faults(hd, linux=True)
    elif kind == "multicast-off":  # the switch stops flooding multicast to this host (IGMP snooping, a cloud)
        _multicast(lab, info, on=False)
    elif kind == "flood":  # a hostile node: COMMAND prints MEGABYTES of lines, then one line that never ends
        files.write_faults(hd, flood=[args[0] if args else "uname", int(args[1]) if len(args) > 1 else 200])
    elif kind == "clear":
        _clear(lab, host, spec)

def _rogue(lab: Lab, host: str, spec: HostSpec, info: dict[str, Any], args: tuple[str, ...]) -> None:
    if len(args) < 2:
        raise LabError("rogue-carp takes VHID PASSWORD [VIP] [ADVSKEW]")
    vip = args[2] if len(args) > 2 else str(lab.config.network.network_address + 100)
    skew = args[3] if len(args) > 3 else "0"
    hd = lab.hostdir(host)
    if info.get("rogue"):
        kill_group(info["rogue"])
    passfile = os.path.join(hd, "run", "rogue.pass")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(args[1])
    rogue = subprocess.Popen(
        [*lab._enter(info), "ucarp", "--interface=em0", "--srcip=" + spec.address, "--vhid=" + args[0],
         "--passfile=" + passfile, "--addr=" + vip, "--advbase=1", "--advskew=" + skew, "--preempt",
         "--upscript=" + os.path.join(hd, "carp-up.sh"), "--downscript=" + os.path.join(hd, "carp-down.sh"),
         "--xparam=rogue", "--shutdown"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(hd, "run", "rogue.log"), "a"), start_new_session=True)
    lab._update(host, rogue=rogue.pid)

def _multicast(lab: Lab, info: dict[str, Any], on: bool) -> None:
    if info.get("port"):
        sh("ip", "netns", "exec", lab.layout.switch_ns, "bridge", "link", "set", "dev", info["port"], "mcast_flood",
           "on" if on else "off", check=False)


def _clear(lab: Lab, host: str, spec: HostSpec) -> None:
    info = lab._info(host)
    _multicast(lab, info, on=True)
    hd = lab.hostdir(host)
    sh("ip", "netns", "exec", lab.ns(host), "tc", "qdisc", "del", "dev", "em0", "root", check=False)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(hd, "run", "netem"))
    if info.get("rogue"):
        kill_group(info["rogue"])
        lab.exec(host, ["ip", "addr", "flush", "dev", "em0", "scope", "global"])
        lab.exec(host, ["ip", "addr", "add", "%s/%d" % (spec.address, lab.config.network.prefixlen),
                         "dev", "em0"])
        lab.exec(host, ["ip", "addr", "add", "%s/%d" % (spec.address6, lab.config.prefixlen6), "dev", "em0",
                         "nodad"])
        if spec.role != "gateway":
            lab.exec(host, ["ip", "route", "replace", "default", "via", lab.config.gateway])
        lab._update(host, rogue=0)
    flags = lab.exec(host, ["ip", "-o", "link", "show", "em0"]).stdout.split("<", 1)[-1].split(">")[0].split(",")
    if "UP" not in flags:  # the link was cut: bring it back (CARP re-initialises as on FreeBSD)
        lab.exec(host, ["carplab", "link", "up"], check=True)
    files.write_faults(hd)
    key = os.path.join(hd, "ssh_host_ed25519_key")
    key_changed = os.path.exists(key + ".orig")
    if key_changed:
        os.replace(key + ".orig", key)
        os.replace(key + ".pub.orig", key + ".pub")
    info = lab._info(host)
    if info.get("hang") or info.get("sshd_stopped") or key_changed:
        _restore_sshd(lab, spec, info)


def _restore_sshd(lab: Lab, spec: HostSpec, info: dict[str, Any]) -> None:
    if info.get("hang"):
        kill_group(info["hang"])
    lab.restart_sshd(spec, info)
    relay = info.get("relay", 0)
    if not relay or not alive(relay):
        relay = lab._start_relay(spec)
    lab._update(spec.name, hang=0, relay=relay, sshd_stopped=False)
