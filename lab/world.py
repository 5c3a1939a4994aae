"""The lab controller: builds, inspects, breaks and removes the FreeBSD-like hosts.

Safety rule: nothing is ever created in the root network namespace except loopback listeners
(127.0.0.1:PORT). The switch is a bridge inside its own namespace, veth pairs are created
directly inside namespaces, and every lab address lives in a host's namespace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import faults, files
from .layout import Layout
from .proc import LabError, alive, kill_group, sh
from .topology import USERS, HostSpec, LabConfig

FAULT_KINDS = faults.FAULT_KINDS

def lab_available() -> tuple[bool, str]:
    """Whether this process can build a lab, and if not, why."""
    if os.geteuid() != 0:
        return False, "the lab needs root (network namespaces, mounts)"
    for tool in ("ip", "unshare", "nsenter", "socat", "ucarp", "ssh-keygen", "tc"):
        if shutil.which(tool) is None:
            return False, "the lab needs %s (scripts/bootstrap installs it)" % tool
    if not os.path.exists("/usr/sbin/sshd"):
        return False, "the lab needs OpenSSH's sshd (package openssh-server)"
    probe = "carpwebprobe%d" % os.getpid()
    res = sh("ip", "netns", "add", probe, check=False)
    if res.returncode != 0:
        return False, "network namespaces are not available: %s" % res.stderr.strip()
    sh("ip", "netns", "del", probe, check=False)
    return True, ""


@dataclass
class HostInfo:
    name: str
    role: str
    address: str
    namespace: str
    ssh_host: str
    ssh_port: int
    version: str
    host_key_fingerprint: str
    users: list[dict[str, Any]]
    address6: str = ""

    def user(self, name: str) -> dict[str, Any]:
        return next(u for u in self.users if u["name"] == name)


class Lab:
    """One lab: ``up``, ``down``, ``status``, ``reboot``, ``exec``, ``log`` and ``fault``."""

    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        self.layout = Layout(self.config)
        self.dir = self.layout.dir
        self.state_path = self.layout.state_path

    # -- naming ---------------------------------------------------------------------------------
    def ns(self, host: str) -> str:
        return self.layout.ns(host)

    @property
    def switch_ns(self) -> str:
        return self.layout.switch_ns

    def hostdir(self, host: str) -> str:
        return self.layout.hostdir(host)

    @property
    def key_path(self) -> str:
        return self.layout.key_path

    # -- state file -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        os.makedirs(self.config.root_dir, exist_ok=True)
        with open(os.path.join(self.config.root_dir, self.config.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _spec(self, host: str) -> HostSpec:
        for spec in self.config.hosts():
            if spec.name == host:
                return spec
        raise LabError("no host %r in lab %s" % (host, self.config.name))

    # -- lifecycle ------------------------------------------------------------------------------
    def is_up(self) -> bool:
        state = self._load()
        if not state or state.get("config") != self.config.to_dict():
            return False
        return all(alive(h.get("holder", 0)) and alive(h.get("sshd", 0)) or h.get("sshd_stopped")
                   for h in state.get("hosts", {}).values()) and len(state.get("hosts", {})) == len(
            self.config.hosts())

    def up(self, key_store: str | None = None) -> list[HostInfo]:
        """Build the lab; a second call on a healthy lab changes nothing. With `key_store`, the client key
        and the hosts' SSH host keys are reused from (or kept in) that folder across rebuilds."""
        self.layout = Layout(self.config, os.path.abspath(key_store) if key_store else None)
        with self._lock():
            if self.is_up():
                files.install_emulator(self.dir)  # keeps a running lab's commands current
                self.restart_emulators()
                files.store_keys(self.layout, [spec.name for spec in self.config.hosts()])
                return self.status()
            self._teardown()
            state: dict[str, Any] = {"config": self.config.to_dict(), "hosts": {}, "created": []}
            os.makedirs(self.dir, exist_ok=True)
            self._save(state)
            try:
                self._build(state)
            except BaseException:
                self._teardown()
                raise
        return self.status()

    def down(self) -> None:
        with self._lock():
            self._teardown()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.config.root_dir, self.config.name + ".lock"))
            os.rmdir(self.config.root_dir)

    def _build(self, state: dict[str, Any]) -> None:
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)
            state["created"].append("/run/sshd")
        files.install_emulator(self.dir)
        os.makedirs(os.path.dirname(self.key_path), exist_ok=True)
        files.make_key(self.key_path, "carplab", self.layout.key_store)
        with open(self.key_path + ".pub") as f, open(os.path.join(self.dir, "keys", "authorized_keys"), "w") as a:
            a.write(f.read())
        sw = self.switch_ns
        sh("ip", "netns", "add", sw)
        state["switch"] = sw
        self._save(state)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for index, spec in enumerate(self.config.hosts()):
            state["hosts"][spec.name] = self._build_host(spec, index)
            self._save(state)

    def _build_host(self, spec: HostSpec, index: int) -> dict[str, Any]:
        ns, sw, hd = self.ns(spec.name), self.switch_ns, self.hostdir(spec.name)
        sh("ip", "netns", "add", ns)
        port = "p%d" % index
        # Created inside the switch namespace with its peer placed straight into the host's: the pair
        # never exists in the root namespace.
        sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "em0", "netns", ns)
        sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
        prefix = self.config.network.prefixlen
        sh("ip", "-n", ns, "addr", "add", "%s/%d" % (spec.address, prefix), "dev", "em0")
        # IPv6 in the lab's documentation prefix, inside the host's namespace only (never the root's); kept across a
        # cut link, as FreeBSD keeps its addresses (Linux would flush them)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.em0.keep_addr_on_down=1")
        sh("ip", "-n", ns, "addr", "add", "%s/%d" % (spec.address6, self.config.prefixlen6), "dev", "em0", "nodad")
        sh("ip", "-n", ns, "link", "set", "em0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        if spec.role != "gateway":
            sh("ip", "-n", ns, "route", "add", "default", "via", self.config.gateway, "dev", "em0")
        files.write_host_tree(self.layout, spec)
        holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "-m", "-u", "--propagation", "private",
             "/bin/sh", os.path.join(hd, "holder.sh")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(hd, "holder.log"), "w"),
            start_new_session=True)
        ready = os.path.join(hd, "run", "holder.ready")
        for _ in range(500):
            if os.path.exists(ready):
                break
            if holder.poll() is not None:
                raise LabError("host %s: namespace holder exited: %s" % (
                    spec.name, open(os.path.join(hd, "holder.log")).read()))
            time.sleep(0.01)
        info = {"holder": self._holder_pid(holder.pid), "holder_group": holder.pid, "ns": ns, "port": port}
        info["emu"] = self._start_emulator(spec, info)
        if self.config.speaker == "native":
            info["speaker"] = self._start_speaker(spec, info)
        info["sshd"] = self._start_sshd(spec, info)
        info["relay"] = self._start_relay(spec)
        return info

    def _holder_pid(self, launcher: int) -> int:
        """The pid of the process that owns the host's mount namespace (the `sleep` the holder execs)."""
        for _ in range(200):
            res = sh("pgrep", "-g", str(launcher), "-x", "sleep", check=False)
            if res.stdout.strip():
                return int(res.stdout.split()[0])
            time.sleep(0.01)
        raise LabError("the namespace holder did not settle")

    def _enter(self, info: dict[str, Any]) -> list[str]:
        return ["nsenter", "-t", str(info["holder"]), "-m", "-n", "-u", "--"]

    def _start_daemon(self, spec: HostSpec, info: dict[str, Any], argv: list[str], name: str, ready: str) -> int:
        """One of a host's daemons, inside its namespaces: started, then waited for until it writes `ready`."""
        hd = self.hostdir(spec.name)
        ready = os.path.join(hd, "run", ready)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready)
        log = os.path.join(hd, name + ".log")
        proc = subprocess.Popen([*self._enter(info), *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(log, "a"), start_new_session=True)
        for _ in range(500):
            if os.path.exists(ready):
                return proc.pid
            if proc.poll() is not None:
                with open(log) as f:
                    raise LabError("host %s: the %s daemon exited: %s" % (spec.name, name, f.read()[-2000:]))
            time.sleep(0.01)
        raise LabError("host %s: the %s daemon did not start" % (spec.name, name))

    def _start_emulator(self, spec: HostSpec, info: dict[str, Any]) -> int:
        """The host's emulator daemon (lab/freebsd/zygote.py): its FreeBSD commands run as forks of it."""
        return self._start_daemon(spec, info, files.emulator_daemon(self.dir), "emu", "emu.ready")

    def _start_speaker(self, spec: HostSpec, info: dict[str, Any]) -> int:
        """The host's carp(4) speaker (lab/freebsd/speaker.py): idle until a vhid is configured."""
        return self._start_daemon(spec, info, files.speaker_daemon(self.dir), "speaker", "speaker.pid")

    def stop_emulator(self, host: str) -> None:
        """Stop one host's emulator daemon: its commands then start the emulator themselves (the slow path)."""
        kill_group(self._info(host).get("emu", 0))

    def restart_emulators(self) -> None:
        """New emulator code (`up` on a running lab) reaches the hosts' daemons."""
        state = self._load()
        for spec in self.config.hosts():
            info = state["hosts"][spec.name]
            if info.get("emu"):
                kill_group(info["emu"])
            info["emu"] = self._start_emulator(spec, info)
            if info.get("speaker"):
                kill_group(info["speaker"])
            if self.config.speaker == "native":
                info["speaker"] = self._start_speaker(spec, info)
        self._save(state)

    def _start_sshd(self, spec: HostSpec, info: dict[str, Any]) -> int:
        hd = self.hostdir(spec.name)
        proc = subprocess.Popen(
            [*self._enter(info), "/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(hd, "sshd_config")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(hd, "sshd.log"), "a"), start_new_session=True)
        # Ready when it listens on the host's address inside the namespace.
        for _ in range(500):
            res = sh("ip", "netns", "exec", self.ns(spec.name), "ss", "-Htln", "sport = :22", check=False)
            if spec.address in res.stdout:
                return proc.pid
            if proc.poll() is not None:
                raise LabError("host %s: sshd exited: %s" % (spec.name, open(os.path.join(hd, "sshd.log")).read()))
            time.sleep(0.01)
        raise LabError("host %s: sshd did not start listening" % spec.name)

    def _start_relay(self, spec: HostSpec) -> int:
        """127.0.0.1:PORT in the root namespace -> the host's sshd, entering the lab at the gateway."""
        relay = os.path.join(self.hostdir(spec.name), "relay.sh")
        proc = subprocess.Popen(
            ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,nodelay" % spec.ssh_port, "EXEC:" + relay],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        for _ in range(500):
            res = sh("ss", "-Htln", "sport = :%d" % spec.ssh_port, check=False)
            if "127.0.0.1:%d" % spec.ssh_port in res.stdout:
                return proc.pid
            if proc.poll() is not None:
                raise LabError("host %s: port 127.0.0.1:%d is taken" % (spec.name, spec.ssh_port))
            time.sleep(0.01)
        raise LabError("host %s: relay did not start" % spec.name)

    def _teardown(self) -> None:
        """Remove everything a lab of this name made, from its state file and by name (after a crash)."""
        state = self._load()
        for info in state.get("hosts", {}).values():
            for key in ("relay", "hang", "rogue", "emu"):
                if info.get(key):
                    kill_group(info[key])
        # Relays forked per connection carry the lab dir in their command line.
        sh("pkill", "-9", "-f", "EXEC:" + self.dir + "/", check=False)
        prefix = self.config.name + "-"
        names = [line.split()[0] for line in sh("ip", "netns", "list", check=False).stdout.splitlines()
                 if line.startswith(prefix)]
        for ns in names:
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                kill_group(int(pid))
        for ns in names:
            for _ in range(50):
                if sh("ip", "netns", "del", ns, check=False).returncode == 0:
                    break
                time.sleep(0.05)
        for path in state.get("created", []):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(self.config.root_dir)

    # -- inspection -----------------------------------------------------------------------------
    def fingerprint(self, host: str) -> str:
        key = os.path.join(self.hostdir(host), "ssh_host_ed25519_key.pub")
        return sh("ssh-keygen", "-lf", key).stdout.strip()

    def status(self) -> list[HostInfo]:
        state = self._load()
        if not state:
            return []
        out = []
        for spec in self.config.hosts():
            if spec.name not in state["hosts"]:
                continue
            users = [{"name": name, "uid": uid, "key_path": self.key_path, "password": password,
                      "privilege": privilege} for name, (uid, password, privilege) in USERS.items()]
            out.append(HostInfo(spec.name, spec.role, spec.address, self.ns(spec.name), "127.0.0.1",
                                spec.ssh_port, spec.version, self.fingerprint(spec.name), users, spec.address6))
        return out

    def host(self, name: str) -> HostInfo:
        for info in self.status():
            if info.name == name:
                return info
        raise LabError("no host %r in lab %s (is it up?)" % (name, self.config.name))

    def host_pids(self, host: str) -> dict[str, int]:
        """The processes the lab keeps for a host: holder, emu (its emulator daemon), sshd, relay."""
        return {k: v for k, v in self._info(host).items() if k in ("holder", "emu", "sshd", "relay")}

    def _info(self, host: str) -> dict[str, Any]:
        state = self._load()
        if host not in state.get("hosts", {}):
            raise LabError("no host %r in lab %s (is it up?)" % (host, self.config.name))
        return state["hosts"][host]

    def _update(self, host: str, **values: Any) -> None:
        state = self._load()
        state["hosts"][host].update(values)
        self._save(state)

    def exec(self, host: str, argv: list[str], timeout: float = 60, check: bool = False,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside a host (its network, mounts and hostname), FreeBSD commands first."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8"}
        return sh(*self._enter(self._info(host)), *argv, check=check, timeout=timeout, env=env, input=input)

    def log(self, host: str) -> list[str]:
        path = os.path.join(self.hostdir(host), "commands.log")
        self._info(host)
        try:
            with open(path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def clear_log(self, host: str) -> None:
        with open(os.path.join(self.hostdir(host), "commands.log"), "w"):
            pass

    def end_sessions(self, host: str) -> None:
        """End every SSH connection to the host (its per-connection sshd processes), as a reboot or a reinstall
        does; the listening sshd stays."""
        info = self._info(host)
        for pid in sh("ip", "netns", "pids", self.ns(host), check=False).stdout.split():
            try:
                with open("/proc/%s/comm" % pid) as f:
                    comm = f.read().strip()
            except OSError:  # it ended meanwhile (a command that finished)
                continue
            if comm in ("sshd", "sshd-session") and int(pid) != info.get("sshd"):
                kill_group(int(pid))

    def reboot(self, host: str) -> None:
        """Runtime state is lost; loader.conf, sysctl.conf and rc.conf are applied again, as at boot."""
        self.end_sessions(host)
        self.exec(host, ["carplab", "halt"], check=True)
        self.exec(host, ["carplab", "boot"], check=True)

    def reset_host(self, host: str) -> None:
        """Back to a fresh install: faults cleared, files as first written, carp unloaded, the release and login
        shells as configured."""
        self.fault(host, "clear")
        self.exec(host, ["carplab", "halt"], check=True)
        self.exec(host, ["rm", "-rf", *files.INSTALLED_LATER], check=True)
        self.reinstall(host)
        files.write_system_files(self.layout, self._spec(host))
        self.clear_log(host)

    def reinstall(self, host: str, version: str | None = None, shells: dict[str, str] | None = None) -> None:
        """The host as if another FreeBSD release were installed on it (uname, ifconfig's dialect, root's login
        shell), and with these users' login shells (e.g. {"carpadm": "/bin/csh"}); nothing else changes."""
        spec = self._spec(host)
        if version is not None or shells:
            spec = dataclasses.replace(spec, version=version or spec.version,
                                       shells=tuple((shells or {}).items()))
        files.write_identity(self.layout, spec)
        files.write_accounts(self.layout, spec)
        self.end_sessions(host)  # a reinstalled host keeps no connection (a warm one would keep the old shell)

    # -- faults ---------------------------------------------------------------------------------
    def fault(self, host: str, kind: str, *args: str) -> None:
        """Break (or mend) one host: see FAULT_KINDS and lab/faults.py."""
        faults.apply(self, host, kind, *args)

    def restart_sshd(self, spec: HostSpec, info: dict[str, Any]) -> None:
        if info.get("sshd"):
            kill_group(info["sshd"])
            for _ in range(200):
                res = sh("ip", "netns", "exec", self.ns(spec.name), "ss", "-Htln", "sport = :22", check=False)
                if spec.address not in res.stdout:
                    break
                time.sleep(0.01)
        self._update(spec.name, sshd=self._start_sshd(spec, info))


def root_namespace_snapshot() -> dict[str, list[str]]:
    """Interfaces, IPv4 addresses and routes of the root namespace, to prove the lab added none."""
    links = sorted(line.split(":")[1].strip().split("@")[0]
                   for line in sh("ip", "-o", "link", "show").stdout.splitlines())
    addrs = sorted(" ".join(line.split()[1:4]) for line in sh("ip", "-o", "-4", "addr", "show").stdout.splitlines())
    routes = sorted(sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines())
    return {"links": links, "addrs": addrs, "routes": routes}
