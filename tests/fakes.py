"""A fake transport for fast tests: FreeBSD-like hosts that answer the commands carpweb sends, record them,
and elect a CARP master at once (lowest advskew + demotion). No SSH, no root, no lab.

It knows only carpweb's command shapes; anything else answers exit 127 so a new command shows up in tests.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from wizard.carp.facts import CommandResult
from wizard.models import Server
from wizard.ssh import SSHError, exec_request

IFCONFIG = """{iface}: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\tinet {address} netmask 0xffffff00 broadcast 192.0.2.255
{vips}{carps}\tstatus: active
lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
"""


@dataclass
class Vhid:
    advskew: int
    advbase: int
    password: str
    addresses: list[str]
    state: str = "BACKUP"


@dataclass
class FakeHost:
    name: str
    address: str
    world: FakeWorld
    system: str = "FreeBSD"
    interface: str = "em0"
    uid: int = 0
    carp_loaded: bool = False
    loader: dict[str, str] = field(default_factory=dict)
    rc_conf: dict[str, str] = field(default_factory=dict)
    sysctl_conf: str = "# $FreeBSD$\n"
    sysctl: dict[str, int] = field(default_factory=lambda: {"allow": 1, "preempt": 0, "demotion": 0})
    vhids: dict[int, Vhid] = field(default_factory=dict)
    reachable: bool = True
    hang_on: str = ""  # a command containing this blocks until the connection is closed
    probe_output: str = ""  # what `ping -c N -i ...` of the VIP prints (the drill's probe)
    event_log: list[str] = field(default_factory=list)  # /var/log/carpweb/carp-events.log
    files: dict[str, str] = field(default_factory=dict)  # other files carpweb writes (devd rule, script...)
    devd_restarts: int = 0
    sent: list[tuple[str, str | None]] = field(default_factory=list)

    # -- rendering ------------------------------------------------------------------------------
    def ifconfig(self) -> str:
        vips = "".join(f"\tinet {a.split('/')[0]} netmask 0xffffffff broadcast {a.split('/')[0]} vhid {n}\n"
                       for n, v in sorted(self.vhids.items()) for a in v.addresses)
        carps = "".join(f"\tcarp: {v.state} vhid {n} advbase {v.advbase} advskew {v.advskew}\n"
                        for n, v in sorted(self.vhids.items()))
        return IFCONFIG.format(iface=self.interface, address=self.address, vips=vips, carps=carps)

    def rc_text(self) -> str:
        return "".join(f'{k}="{v}"\n' for k, v in self.rc_conf.items())

    # -- commands -------------------------------------------------------------------------------
    def answer(self, command: str, password: str) -> CommandResult:  # noqa: C901 - one dispatch table
        if self.system != "FreeBSD" and command.split()[0] not in ("id", "uname"):
            return CommandResult(127, "", f"sh: 1: {command.split()[0]}: not found\n")
        words = shlex.split(command.replace('"$CARP_PASS"', password).replace("$CARP_PASS", password)) \
            if not command.startswith(("for n in", "t=$(", "if [", "v=$(", "k=$(")) else []
        if command == "id -u":
            return CommandResult(0, f"{self.uid}\n", "")
        if command == "uname -s; uname -r":
            return CommandResult(0, f"{self.system}\n14.3-RELEASE\n", "")
        if command == "ifconfig -l":
            return CommandResult(0, f"{self.interface} lo0\n", "")
        if words[:1] == ["ifconfig"]:
            return self._ifconfig(words[1:])
        if command == "route -n get default":
            return CommandResult(0, f"   route to: default\n    gateway: {self.world.gateway}\n", "")
        if words[:1] == ["ping"]:
            return self._ping(words)
        if words[:1] == ["sysrc"]:
            return self._sysrc(words[1:])
        if words == ["kldstat", "-q", "-m", "carp"]:
            return CommandResult(0 if self.carp_loaded else 1, "", "")
        if words[:3] == ["kldload", "-n", "carp"]:
            self.carp_loaded = True
            return CommandResult(0, "", "")
        if words[:1] == ["sysctl"]:
            return self._sysctl(words[1:])
        if words[:1] == ["cat"]:
            return self._cat(words[1])
        if command.startswith("if [ -f"):  # a one-time backup
            return CommandResult(0, "", "")
        if command.startswith("t=$(mktemp /etc/sysctl.conf"):
            line = re.search(r"echo '?([^' ]+)'? >>", command).group(1)  # type: ignore[union-attr]
            name = line.split("=")[0]
            kept = [ln for ln in self.sysctl_conf.splitlines() if not ln.startswith(name + "=")]
            self.sysctl_conf = "\n".join([*kept, line]) + "\n"
            return CommandResult(0, "", "")
        if command.startswith("mkdir -p ") and "$(mktemp " in command:  # a whole file, written atomically
            words = shlex.split(command)
            escaped = words[words.index("printf") + 2]  # printf '%b' TEXT, TEXT's backslashes and newlines escaped
            self.files[words[-1]] = re.sub(r"\\([\\n])", lambda m: "\n" if m.group(1) == "n" else "\\", escaped)
            return CommandResult(0, "", "")
        if words[:2] == ["rm", "-f"]:
            self.files.pop(words[2], None)
            return CommandResult(0, "", "")
        if words == ["service", "devd", "restart"]:
            self.devd_restarts += 1
            return CommandResult(0, "Stopping devd.\nStarting devd.\n", "")
        if command.startswith("f=1; for n in $(seq 0 63)"):
            return self._password_current(command, password)
        if command.startswith("k=$(ifconfig -k "):  # the running key against the password, on the host
            vhid = self.vhids.get(int(re.search(r" vhid (\d+) advbase", command).group(1)))  # type: ignore[union-attr]
            return CommandResult(0 if vhid is not None and vhid.password == password[:19] else 1, "", "")
        if words[:1] == ["timeout"] and "tcpdump" in words:  # listening to the segment (carp.facts.CarpHeard)
            return CommandResult(124, self.world.advertisements(self), "listening on em0\n")
        if command.startswith("v=$(sysrc -n"):
            old, new = re.findall(r"ifconfig_\w+_alias\d+", command)
            self.rc_conf[new] = self.rc_conf[old]
            return CommandResult(0, "", "")
        return CommandResult(127, "", f"fake host: unknown command {command!r}\n")

    def _ifconfig(self, args: list[str]) -> CommandResult:
        if args and args[0] != self.interface and args[0] != "lo0":
            return CommandResult(1, "", f"ifconfig: interface {args[0]} does not exist\n")
        if len(args) <= 1:
            return CommandResult(0, self.ifconfig(), "")
        if "-alias" in args:
            address = args[args.index("-alias") - 1]
            for n, v in list(self.vhids.items()):
                v.addresses = [a for a in v.addresses if a.split("/")[0] != address]
                if not v.addresses:
                    del self.vhids[n]
            self.world.elect()
            return CommandResult(0, "", "")
        if not self.carp_loaded:
            return CommandResult(1, "", "ifconfig: SIOCSVH: Protocol not supported\n")
        opts = dict(zip(args[1::2], args[2::2], strict=False)) if args[1] != "inet" else dict(
            zip(args[2::2], args[3::2], strict=False))
        if "vhid" not in opts:
            needs = next((k for k in ("advskew", "advbase", "pass") if k in opts), "state")
            return CommandResult(1, "", f"ifconfig: {needs} requires vhid\n")
        n = int(opts["vhid"])
        if not 0 < n < 256:
            return CommandResult(1, "", "ifconfig: vhid must be greater than 0 and less than 255\n")
        vhid = self.vhids.get(n) or Vhid(0, 1, "", [])
        vhid.advskew, vhid.advbase = int(opts.get("advskew", vhid.advskew)), int(opts.get("advbase", vhid.advbase))
        vhid.password = opts.get("pass", vhid.password)
        if "alias" in opts and opts["alias"] not in vhid.addresses:
            vhid.addresses.append(opts["alias"])
        self.vhids[n] = vhid
        self.world.elect()
        return CommandResult(0, "", "")

    def _ping(self, words: list[str]) -> CommandResult:
        host = words[-1]
        if "-i" in words:
            return CommandResult(0, self.probe_output, "")
        answers = host == self.world.gateway or (host == self.world.vip and self.world.master() is not None)
        return CommandResult(0 if answers else 2, "", "")

    def _sysrc(self, args: list[str]) -> CommandResult:
        target = self.rc_conf
        if args[:1] == ["-f"]:
            target, args = (self.loader if args[1] == "/boot/loader.conf" else self.rc_conf), args[2:]
        if args[:1] == ["-n"]:
            value = target.get(args[1])
            return CommandResult(0, value + "\n", "") if value is not None else CommandResult(
                1, "", f"sysrc: unknown variable '{args[1]}'\n")
        if args[:1] == ["-x"]:
            target.pop(args[1], None)
            return CommandResult(0, "", "")
        if args[:1] == ["-c"]:
            name, _, value = args[1].partition("=")
            return CommandResult(0 if target.get(name) == value else 1, "", "")
        if args[0].startswith("-") or "=" not in args[0]:
            return CommandResult(127, "", f"fake host: unknown command {'sysrc ' + ' '.join(args)!r}\n")
        name, _, value = args[0].partition("=")
        before = target.get(name, "")
        target[name] = value
        return CommandResult(0, f"{name}: {before} -> {value}\n", "")

    def _sysctl(self, args: list[str]) -> CommandResult:
        if not self.carp_loaded:
            return CommandResult(1, "", f"sysctl: unknown oid '{args[-1].split('=')[0]}'\n")
        if args[0] == "-n":
            return CommandResult(0, f"{self.sysctl[args[1].rsplit('.', 1)[1]]}\n", "")
        if args == ["net.inet.carp"]:
            return CommandResult(0, "".join(f"net.inet.carp.{k}: {v}\n" for k, v in self.sysctl.items()), "")
        if "=" not in args[0]:
            return CommandResult(0, f"{args[0]}: {self.sysctl[args[0].rsplit('.', 1)[1]]}\n", "")
        name, value = args[0].split("=")
        key = name.rsplit(".", 1)[1]
        before = self.sysctl[key]
        self.sysctl[key] = before + int(value) if key == "demotion" else int(value)
        if key == "allow" and before != self.sysctl[key]:  # carp_sc_state: CARP off is an interface down
            self.sysctl["demotion"] += 240 if self.sysctl[key] == 0 else -240
        if (key, self.sysctl[key]) == ("allow", 0) or (key == "demotion" and self.sysctl[key] > before):
            self.world.carp_moved.set()
        self.world.elect()
        return CommandResult(0, f"{name}: {before} -> {self.sysctl[key]}\n", "")

    def _cat(self, path: str) -> CommandResult:
        texts = {"/etc/rc.conf": self.rc_text(), "/etc/sysctl.conf": self.sysctl_conf, **self.files}
        return CommandResult(0, texts[path], "") if path in texts else CommandResult(1, "", "no such file\n")

    def _password_current(self, command: str, password: str) -> CommandResult:
        vhid = re.search(r'\*"vhid (\d+) "\*', command).group(1)  # type: ignore[union-attr]
        lines = [v for v in self.rc_conf.values() if f"vhid {vhid} " in v]
        ok = bool(lines) and all(f" pass {password} " in v + " " for v in lines)
        return CommandResult(0 if ok else 1, "", "")


# What a test host needs to answer carp.facts.batch_command as a shell would (the product only builds and reads
# batches; these take one apart and print its output).
_BATCH_PART = re.compile(r"printf '%s\\n' '(?P<b>[0-9a-f]+) (?P<i>\d+)'; printf '%s\\n' '(?P=b) (?P=i)' >&2; "
                         r"\{ (?P<command>.*?) ; \} </dev/null; c=\$\?; ", re.S)


def batch_parts(command: str) -> tuple[str, list[str]] | None:
    """The boundary and the commands of a `batch_command`, or None for any other command ."""
    parts = [m.groupdict() for m in _BATCH_PART.finditer(command)]
    if not parts or [int(p["i"]) for p in parts] != list(range(len(parts))):
        return None
    return parts[0]["b"], [p["command"] for p in parts]


def batch_output(boundary: str, results: list[CommandResult]) -> CommandResult:
    """What the shell prints for `batch_command` when its commands give `results`."""
    out = "".join(f"{boundary} {i}\n{r.stdout}\n{boundary} {i} end {r.code}\n" for i, r in enumerate(results))
    err = "".join(f"{boundary} {i}\n{r.stderr}\n{boundary} {i} end\n" for i, r in enumerate(results))
    return CommandResult(0, out, err)


def answer_batch(command: str, answer: Callable[[str], CommandResult]) -> CommandResult | None:
    """A batch of reads (wizard.carp.facts.batch_command) answered command by command, as the shell would;
    None for any other command. Test hosts record each read on its own."""
    parts = batch_parts(command)
    if parts is None:
        return None
    boundary, commands = parts
    return batch_output(boundary, [answer(one) for one in commands])


class FakeConnection:
    """What wizard.ssh.Connection does, answered by a FakeHost; records every command and its stdin."""

    def __init__(self, host: FakeHost) -> None:
        self.host, self.closed = host, threading.Event()

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult:
        exec_request("fake", command, "root")  # what the real transport sends: one line, or it refuses
        result = answer_batch(command, lambda one: self._one(one, stdin, None))
        if result is None:
            return self._one(command, stdin, on_line)
        if on_line is not None:
            for line in result.stdout.splitlines():
                on_line(line)
        return result

    def _one(self, command: str, stdin: str | None, on_line: Callable[[str], None] | None) -> CommandResult:
        if self.closed.is_set() or not self.host.reachable:
            raise SSHError("unreachable", f"{self.host.name}: the SSH connection broke (fake).")
        self.host.sent.append((command, stdin))
        if self.host.hang_on and self.host.hang_on in command:
            self.closed.wait()
            raise SSHError("unreachable", f"{self.host.name}: the SSH connection broke (closed while waiting).")
        password = stdin.strip() if stdin and command.startswith("IFS= read -r CARP_PASS; ") else ""
        with self.host.world.lock:
            result = self.host.answer(command.removeprefix("IFS= read -r CARP_PASS; "), password)
        if on_line is not None:
            lines = result.stdout.splitlines()
            if command.startswith("ping") and " -i " in command and lines and "bytes from" in lines[0]:
                # A prober's ping runs in time: its first reply before the drill's or handover's change, the rest
                # (the gap, the new master) after it.
                self.host.world.carp_moved.clear()  # every ping starts before the change it measures
                on_line(lines.pop(0))
                self.host.world.carp_moved.wait(10)
            for line in lines:
                on_line(line)
        return result

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float) -> None:
        """The collector's session: the lines of the host's event log, then until the connection is closed."""
        if self.closed.is_set() or not self.host.reachable:
            raise SSHError("unreachable", f"{self.host.name}: the SSH connection broke (fake).")
        self.host.sent.append((command, None))
        for line in list(self.host.event_log):
            on_line(line)
        self.closed.wait()
        raise SSHError("unreachable", f"{self.host.name}: the SSH connection was closed.")

    def close(self) -> None:
        self.closed.set()


@dataclass
class FakeWorld:
    """A segment of fake hosts: the connector carpweb's runner takes, and CARP's election."""

    gateway: str = "192.0.2.1"
    vip: str = "192.0.2.100"
    hosts: dict[str, FakeHost] = field(default_factory=dict)
    refuse: dict[str, SSHError] = field(default_factory=dict)  # server name -> what connecting raises
    lock: threading.RLock = field(default_factory=threading.RLock)
    connections: list[FakeConnection] = field(default_factory=list)
    multicast_blocked: bool = False
    foreign_speakers: list[tuple[str, int]] = field(default_factory=list)  # (address, vhid) of other CARP devices
    carp_moved: threading.Event = field(default_factory=threading.Event)  # a node stopped CARP or was demoted

    def add(self, name: str, address: str, **kw: object) -> FakeHost:
        self.hosts[name] = FakeHost(name, address, self, **kw)  # type: ignore[arg-type]
        return self.hosts[name]

    def connect(self, server: Server) -> FakeConnection:
        if server.name in self.refuse:
            raise self.refuse[server.name]
        conn = FakeConnection(self.hosts[server.name])
        self.connections.append(conn)
        return conn

    def master(self, vhid: int = 1) -> str | None:
        masters = [h.name for h in self.hosts.values() if vhid in h.vhids and h.vhids[vhid].state == "MASTER"]
        return masters[0] if len(masters) == 1 else None

    def elect(self) -> None:
        """Each vhid: the speakers sharing a password elect the lowest advbase, then advskew + demotion."""
        for vhid in {n for h in self.hosts.values() for n in h.vhids}:
            speakers = [h for h in self.hosts.values() if vhid in h.vhids and h.carp_loaded and h.sysctl["allow"]]
            for h in self.hosts.values():
                if vhid in h.vhids and h.carp_loaded and not h.sysctl["allow"]:
                    h.vhids[vhid].state = "INIT"
            for password in {h.vhids[vhid].password for h in speakers}:
                group = [h for h in speakers if h.vhids[vhid].password == password]
                best = min(group, key=lambda h: (h.vhids[vhid].advbase, h.vhids[vhid].advskew + h.sysctl["demotion"]))
                for h in group:
                    h.vhids[vhid].state = "MASTER" if h is best else "BACKUP"

    def advertisements(self, listener: FakeHost) -> str:
        """What tcpdump -T carp prints on `listener`: every other MASTER's advertisements (none when multicast is
        blocked), and the foreign speakers'."""
        if self.multicast_blocked:
            return ""
        lines = [(h.address, n, v) for h in self.hosts.values() if h is not listener
                 for n, v in sorted(h.vhids.items()) if v.state == "MASTER"]
        return "".join(f"IP {a} > 224.0.0.18: CARPv2-advertise 36: vhid={n} advbase={v.advbase} "
                       f"advskew={v.advskew} authlen=7 counter=1\n" for a, n, v in lines) + "".join(
            f"IP {a} > 224.0.0.18: CARPv2-advertise 36: vhid={n} advbase=1 advskew=0 authlen=7 counter=1\n"
            for a, n in self.foreign_speakers)

    def commands(self, host: str) -> list[str]:
        return [c for c, _ in self.hosts[host].sent]


REFUSED = "(refused: not one line)"  # a RecordingTransport's mark for a command the real transport would not send


class RecordingTransport:
    """Records every command and its stdin; answers 'nothing there' (exit 1, no output) unless told otherwise."""

    def __init__(self, answers: Callable[[str], CommandResult] | None = None) -> None:
        self.sent: list[tuple[str, str | None]] = []
        self.answers = answers or (lambda command: CommandResult(1, "", ""))

    def run(self, command: str, stdin: str | None = None, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> CommandResult:
        try:
            exec_request("fake", command, "root")  # one line, or the real transport would refuse it
        except SSHError:
            self.sent.append((command, REFUSED))
            raise
        return answer_batch(command, lambda one: self.run(one, stdin)) or self._record(command, stdin)

    def _record(self, command: str, stdin: str | None) -> CommandResult:
        self.sent.append((command, stdin))
        return self.answers(command)

    def follow(self, command: str, on_line: Callable[[str], None], idle_timeout: float) -> None:
        self.sent.append((command, None))

    def close(self) -> None:
        pass
