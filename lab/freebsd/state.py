"""Per-host emulated kernel state (modules, sysctls, vhids) kept in a JSON file under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

CARP_SYSCTL_DEFAULTS = {
    "allow": 1,
    "dscp": 56,
    "preempt": 0,
    "log": 1,
    "demotion": 0,
    "senderr_demotion_factor": 240,
    "ifdown_demotion_factor": 240,
}
CARP_MAXSKEW = 240


def host_config() -> dict[str, Any]:
    """The host's identity: from $CARPLAB_HOST_DIR (the controller) or /etc/carplab/host.json (a session)."""
    hostdir = os.environ.get("CARPLAB_HOST_DIR")
    path = os.path.join(hostdir, "host.json") if hostdir else "/etc/carplab/host.json"
    with open(path) as f:
        return json.load(f)


def fresh_kernel() -> dict[str, Any]:
    return {"carp_loaded": False, "carp_fileid": 0, "carp_modid": 0, "next_fileid": 6,
            "next_modid": 501, "sysctl": dict(CARP_SYSCTL_DEFAULTS), "vhids": {}}


class Host:
    """One emulated host: its config, its kernel file, and helpers shared by the commands."""

    def __init__(self) -> None:
        self.cfg = host_config()
        self.dir = self.cfg["hostdir"]
        self.kernel_path = os.path.join(self.dir, "kernel.json")
        self.faults_path = os.path.join(self.dir, "faults.json")

    @property
    def major(self) -> int:
        return int(self.cfg["version"].split(".")[0])

    def faults(self) -> dict[str, Any]:
        try:
            with open(self.faults_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def read(self) -> dict[str, Any]:
        try:
            with open(self.kernel_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return fresh_kernel()

    def kernel_log(self, message: str) -> None:
        """A kernel message as syslogd writes it to /var/log/messages (and dmesg shows it)."""
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
        os.makedirs("/var/log", exist_ok=True)
        with open("/var/log/messages", "a") as f:
            f.write("%s %s kernel: %s\n" % (stamp, self.cfg["name"], message))

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the kernel state, serialised across concurrent sessions."""
        with open(os.path.join(self.dir, "kernel.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            yield state
            tmp = self.kernel_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.kernel_path)


def is_root() -> bool:
    return os.geteuid() == 0


def err(msg: str) -> None:
    sys.stderr.write(msg + "\n")


def out(msg: str) -> None:
    sys.stdout.write(msg + "\n")
