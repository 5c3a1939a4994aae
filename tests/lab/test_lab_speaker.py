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
