"""The lab's own carp(4) speaker on the wire: elections, failover within FreeBSD's bound, a planned handover by
demotion that loses (almost) nothing, advertisements tcpdump decodes as CARPv2, and interop with Debian's ucarp,
an implementation nobody here wrote."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from lab.pytest_plugin import Shell
from tests.helpers import wait_until

pytestmark = pytest.mark.lab
VIP = "192.0.2.100"
BOUND = 3 * 1 + 100 / 256  # the backup's master-down interval at advbase 1, advskew 100


def _carp(lab, host: str, skew: int, password: str = "secret", preempt: bool = True) -> None:
    shell = Shell(lab, host)
    try:
        shell.run("kldload -n carp" + ("; sysctl net.inet.carp.preempt=1" if preempt else ""))
        code, _, err = shell.run(f"ifconfig em0 inet vhid 1 advskew {skew} pass {password} alias {VIP}/32")
        assert code == 0, err
    finally:
        shell.close()


def _state(lab, host: str) -> str:
    out = lab.exec(host, ["ifconfig", "em0"]).stdout
    return next(line.split()[1] for line in out.splitlines() if line.strip().startswith("carp:"))


def _wait(lab, host: str, state: str, limit: float = 10.0) -> float:
    started = time.monotonic()
    wait_until(lambda: _state(lab, host) == state, limit=limit, every=0.02)
    return time.monotonic() - started


class Pinger:
    """The lab client pinging the VIP every 10 ms; counts probes sent and answered."""

    def __init__(self, lab, interval: float = 0.01) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + lab.ns("client"), "/bin/ping", "-n", "-D", "-O", "-i", str(interval),
             "-W", "1", VIP], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or []), daemon=True).start()

    def replies(self) -> list[int]:
        return [int(m.group(1)) for line in list(self.lines) if (m := re.search(r"icmp_seq=(\d+) ttl", line))]

    def stop(self) -> tuple[int, int]:
        """(sent, answered) over the probes whose answer had time to come back."""
        self.proc.terminate()
        self.proc.wait(5)
        seqs = self.replies()
        no_answer = [int(m.group(1)) for line in self.lines if (m := re.search(r"no answer yet for icmp_seq=(\d+)",
                                                                                line))]
        sent = max([*seqs, *no_answer]) if seqs or no_answer else 0
        return sent, len(set(seqs))


def test_failure_takeover_within_the_master_down_interval(fresh_native_lab):
    lab = fresh_native_lab
    _carp(lab, "server-1", 0)
    _carp(lab, "server-2", 100)
    _wait(lab, "server-1", "MASTER")
    _wait(lab, "server-2", "BACKUP")
    assert lab.exec("client", ["/bin/ping", "-n", "-c", "1", "-W", "1", VIP]).returncode == 0
    started = time.monotonic()
    lab.fault("server-1", "link-down")
    wait_until(lambda: _state(lab, "server-2") == "MASTER", limit=BOUND + 2, every=0.02)
    took = time.monotonic() - started
    print(f"\nfailure: server-2 MASTER {took:.2f} s after the master's link went down (bound {BOUND + 0.3:.2f} s)")
    assert took <= BOUND + 0.3, took
    assert lab.exec("client", ["/bin/ping", "-n", "-c", "1", "-W", "1", VIP]).returncode == 0
    assert "(master timed out)" in lab.exec("server-2", ["tail", "-n", "3", "/var/log/messages"]).stdout
    lab.fault("server-1", "link-up")
    _wait(lab, "server-1", "MASTER", limit=BOUND + 3)  # preempt: it takes the VIP back


def test_a_planned_handover_by_demotion_loses_at_most_one_probe(fresh_native_lab):
    lab = fresh_native_lab
    _carp(lab, "server-1", 0)
    _carp(lab, "server-2", 100)
    _wait(lab, "server-1", "MASTER")
    _wait(lab, "server-2", "BACKUP")
    pinger = Pinger(lab)
    wait_until(lambda: len(pinger.replies()) > 50, limit=10)
    lab.exec("server-1", ["sysctl", "net.inet.carp.demotion=240"], check=True)
    took = _wait(lab, "server-2", "MASTER", limit=4)
    time.sleep(1.0)
    sent, answered = pinger.stop()
    lost = sent - answered
    print(f"\nhandover by demotion: server-2 MASTER after {took:.2f} s; {lost} of {sent} probes (10 ms) lost")
    assert lost <= 1, (lost, sent)
    assert took < 1 + 240 / 256 + 0.3  # at the demoted master's next advertisement, not a master-down interval
    assert "(preempting a slower master)" in lab.exec("server-2", ["tail", "-n", "3", "/var/log/messages"]).stdout
    assert _state(lab, "server-1") == "BACKUP"


def test_tcpdump_decodes_the_advertisements_as_carp_v2(fresh_native_lab):
    lab = fresh_native_lab
    _carp(lab, "server-1", 7)
    _wait(lab, "server-1", "MASTER", limit=6)

    def capture() -> str:
        res = subprocess.run(["ip", "netns", "exec", lab.ns("client"), "timeout", "5", "tcpdump", "-l", "-n",
                              "-i", "em0", "-c", "2", "-vv", "-T", "carp", "ip proto 112"],
                             capture_output=True, text=True, timeout=10, check=False)
        return res.stdout

    text = capture()
    assert re.search(r"ttl 255.*\n?.*CARPv2-advertise 36: vhid=1 advbase=1 advskew=7 authlen=7 counter=\d+", text), \
        text
    lab.exec("server-1", ["sysctl", "net.inet.carp.demotion=100"], check=True)
    time.sleep(1.2)
    assert "advskew=107 " in capture()  # the demotion is in the advertised skew
    lab.exec("server-1", ["sysctl", "net.inet.carp.demotion=200"], check=True)
    time.sleep(1.2)
    assert "advskew=240 " in capture()  # capped as DEMOTE_ADVSKEW does


@pytest.mark.parametrize("first", ["native", "ucarp"])
def test_interop_with_ucarp_one_master_whoever_starts_first(fresh_native_lab, first):
    """server-1 speaks with the lab's speaker, server-2 runs Debian's ucarp: same vhid, password and address."""
    lab = fresh_native_lab
    ucarp_state = lambda: (lab.exec("server-2", ["ip", "-4", "-o", "addr", "show", "dev", "em0"]).stdout  # noqa: E731
                           .count(f" {VIP}/32"))
    if first == "ucarp":
        lab.fault("server-2", "rogue-carp", "1", "secret", VIP, "0")
        wait_until(lambda: ucarp_state() == 1, limit=10)
        _carp(lab, "server-1", 100)
        time.sleep(4)  # longer than the native node's master-down interval
        assert _state(lab, "server-1") == "BACKUP" and ucarp_state() == 1  # it heard ucarp and deferred
        lab.fault("server-2", "clear")  # ucarp goes: the native node takes over
        _wait(lab, "server-1", "MASTER", limit=BOUND + 1)
    else:
        _carp(lab, "server-1", 0)
        _wait(lab, "server-1", "MASTER")
        lab.fault("server-2", "rogue-carp", "1", "secret", VIP, "100")
        time.sleep(5)  # ucarp's master-down interval and more: it heard the native master and stayed backup
        assert _state(lab, "server-1") == "MASTER" and ucarp_state() == 0
        lab.fault("server-1", "link-down")  # the native master goes: ucarp takes over
        wait_until(lambda: ucarp_state() == 1, limit=8)
        lab.fault("server-1", "link-up")
    assert lab.exec("client", ["/bin/ping", "-n", "-c", "1", "-W", "1", VIP]).returncode == 0


def test_unicast_peers_elect_one_master_where_the_switch_drops_multicast(fresh_native_lab):
    lab = fresh_native_lab
    for host in ("server-1", "server-2"):
        lab.fault(host, "multicast-off")
    _carp(lab, "server-1", 0)
    _carp(lab, "server-2", 100)
    _wait(lab, "server-1", "MASTER")
    _wait(lab, "server-2", "MASTER", limit=BOUND + 2)  # they cannot hear each other: two masters
    for host, skew, peer in (("server-1", 0, "192.0.2.12"), ("server-2", 100, "192.0.2.11")):
        res = lab.exec(host, ["ifconfig", "em0", "inet", "vhid", "1", "advskew", str(skew), "pass", "secret",
                              "peer", peer, "alias", f"{VIP}/32"])
        assert res.returncode == 0, res.stderr
    _wait(lab, "server-2", "BACKUP", limit=3)  # it hears server-1's unicast advertisements now
    assert _state(lab, "server-1") == "MASTER"
    shown = lab.exec("server-2", ["ifconfig", "em0"]).stdout
    assert "\t      peer 192.0.2.11 peer6 ff02::12" in shown


def test_before_14_peer_is_refused_as_ifconfig_does_and_keys_show_only_to_root(fresh_native_lab):
    lab = fresh_native_lab
    lab.reinstall("server-2", version="13.2-RELEASE")
    try:
        lab.exec("server-2", ["kldload", "-n", "carp"], check=True)
        res = lab.exec("server-2", ["ifconfig", "em0", "inet", "vhid", "1", "pass", "secret", "peer", "192.0.2.11",
                                    "alias", f"{VIP}/32"])
        assert (res.returncode, res.stderr.strip()) == (1, "ifconfig: peer: bad value")
        assert "peer" not in lab.exec("server-2", ["ifconfig", "em0"]).stdout  # 13.x prints no peer line
    finally:
        lab.reinstall("server-2")
    _carp(lab, "server-1", 0, password="s3cret-key")
    as_root = lab.exec("server-1", ["ifconfig", "-k", "em0"]).stdout
    assert re.search(r'carp: \w+ vhid 1 advbase 1 advskew 0 key "s3cret-key"\n', as_root), as_root
    shell = Shell(lab, "server-1", "carpadm", password=lab.host("server-1").user("carpadm")["password"])
    try:
        code, out, _ = shell.run("ifconfig -k em0")
    finally:
        shell.close()
    assert code == 0 and "vhid 1" in out and "key" not in out


VIP6 = "2001:db8::100"


def test_an_ipv6_vhid_answers_the_client_from_its_master_and_fails_over(fresh_native_lab):
    lab = fresh_native_lab
    hosts = {h.name: h for h in lab.status()}
    assert hosts["server-1"].address6 == "2001:db8::11" and hosts["client"].address6 == "2001:db8::50"
    for host, skew in (("server-1", 0), ("server-2", 100)):
        lab.exec(host, ["kldload", "-n", "carp"], check=True)
        lab.exec(host, ["sysctl", "net.inet.carp.preempt=1"], check=True)
        res = lab.exec(host, ["ifconfig", "em0", "inet6", f"{VIP6}/64", "vhid", "11", "advskew", str(skew), "pass",
                              "secret6", "alias"])
        assert res.returncode == 0, res.stderr
    wait_until(lambda: "carp: MASTER vhid 11" in lab.exec("server-1", ["ifconfig", "em0"]).stdout, limit=8)
    shown = lab.exec("server-2", ["ifconfig", "em0"]).stdout
    assert f"\tinet6 {VIP6} prefixlen 64 vhid 11" in shown and "carp: BACKUP vhid 11" in shown
    assert "inet6 2001:db8::12 prefixlen 64" in shown and "IFDISABLED" not in shown

    def answers_from() -> str:
        res = lab.exec("client", ["/bin/ping", "-6", "-n", "-c", "1", "-W", "1", VIP6])
        if res.returncode != 0:
            return ""
        neighbours = lab.exec("client", ["ip", "-6", "neigh", "show", VIP6]).stdout
        return neighbours.split("lladdr")[1].split()[0] if "lladdr" in neighbours else ""

    mac = lambda host: lab.exec(host, ["cat", "/sys/class/net/em0/address"]).stdout.strip()  # noqa: E731
    assert wait_until(answers_from, limit=5) == mac("server-1")
    lab.fault("server-1", "link-down")
    _wait(lab, "server-2", "MASTER", limit=BOUND + 2)
    assert wait_until(lambda: answers_from() == mac("server-2"), limit=5)  # the unsolicited NA moved the client
    lab.fault("server-1", "link-up")


def test_a_cut_link_is_init_with_the_ifdown_demotion_and_gives_it_back(fresh_native_lab):
    lab = fresh_native_lab
    _carp(lab, "server-1", 0)
    _wait(lab, "server-1", "MASTER")
    lab.fault("server-1", "link-down")
    assert _state(lab, "server-1") == "INIT"
    assert lab.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "240\n"
    log = lab.exec("server-1", ["tail", "-n", "2", "/var/log/messages"]).stdout
    assert "carp: 1@em0: MASTER -> INIT (hardware interface down)" in log
    assert "carp: demoted by 240 to 240 (interface down)" in log
    lab.fault("server-1", "link-up")
    assert lab.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "0\n"
    assert "carp: demoted by -240 to 0 (interface up)" in lab.exec("server-1", ["tail", "-n", "3",
                                                                               "/var/log/messages"]).stdout
    assert "inet6 2001:db8::11 prefixlen 64" in lab.exec("server-1", ["ifconfig", "em0"]).stdout  # kept
    _wait(lab, "server-1", "MASTER", limit=BOUND + 2)
    lab.exec("server-1", ["sysctl", "net.inet.carp.allow=0"], check=True)  # the same, by hand
    assert _state(lab, "server-1") == "INIT"
    assert lab.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "240\n"
    lab.exec("server-1", ["sysctl", "net.inet.carp.allow=1"], check=True)
    assert lab.exec("server-1", ["sysctl", "-n", "net.inet.carp.demotion"]).stdout == "0\n"


def test_ifconfig_state_forces_a_state_once_as_carp_ioctl_does(fresh_native_lab):
    lab = fresh_native_lab
    _carp(lab, "server-1", 0, preempt=False)
    _carp(lab, "server-2", 100, preempt=False)
    _wait(lab, "server-1", "MASTER")
    _wait(lab, "server-2", "BACKUP")
    lab.exec("server-1", ["ifconfig", "em0", "vhid", "1", "state", "backup"], check=True)
    assert _state(lab, "server-1") == "BACKUP"
    assert "MASTER -> BACKUP (user requested via ifconfig)" in lab.exec("server-1", ["tail", "-n", "2",
                                                                                   "/var/log/messages"]).stdout
    # Both are BACKUP now; whichever master-down timer ends first takes over (on FreeBSD too): one MASTER.
    wait_until(lambda: sorted([_state(lab, "server-1"), _state(lab, "server-2")]) == ["BACKUP", "MASTER"],
               limit=BOUND + 2)
    backup = "server-1" if _state(lab, "server-1") == "BACKUP" else "server-2"
    lab.exec(backup, ["ifconfig", "em0", "vhid", "1", "state", "master"], check=True)
    assert _state(lab, backup) == "MASTER"
    assert "BACKUP -> MASTER (user requested via ifconfig)" in lab.exec(backup, ["tail", "-n", "2",
                                                                                "/var/log/messages"]).stdout


def test_one_vhid_carries_an_ipv4_and_an_ipv6_address(fresh_native_lab):
    lab = fresh_native_lab
    for host, skew in (("server-1", 0), ("server-2", 100)):
        _carp(lab, host, skew)
        res = lab.exec(host, ["ifconfig", "em0", "inet6", f"{VIP6}/64", "vhid", "1", "alias"])
        assert res.returncode == 0, res.stderr
    _wait(lab, "server-2", "BACKUP")
    time.sleep(BOUND + 0.5)  # the HMAC covers both addresses on both nodes: still one master
    assert (_state(lab, "server-1"), _state(lab, "server-2")) == ("MASTER", "BACKUP")
    assert lab.exec("client", ["/bin/ping", "-n", "-c", "1", "-W", "1", VIP]).returncode == 0
    assert lab.exec("client", ["/bin/ping", "-6", "-n", "-c", "1", "-W", "1", VIP6]).returncode == 0
    lab.exec("server-2", ["ifconfig", "em0", "inet6", VIP6, "-alias"], check=True)  # now their lists differ
    _wait(lab, "server-2", "MASTER", limit=BOUND + 2)  # a split brain, as on FreeBSD
