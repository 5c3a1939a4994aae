"""The lab's own promises: network safety, real CARP failover, split brain, persistence, teardown."""

import os
import subprocess
import threading
import time

import pytest

from carpweb import waiting
from lab.pytest_plugin import Shell, require_lab
from lab.topology import LabConfig
from lab.world import Lab, root_namespace_snapshot
from tests.helpers import wait_until

pytestmark = pytest.mark.lab
VIP = "192.0.2.100"


def _configure(lab, skews, password=("secret", "secret"), preempt=True):
    for host, skew, pw in zip(("server-1", "server-2"), skews, password, strict=True):
        sh = Shell(lab, host)
        sh.run("kldload -n carp")
        if preempt:
            sh.run("sysctl net.inet.carp.preempt=1")
        code, _, err = sh.run(f"ifconfig em0 inet vhid 1 advskew {skew} pass {pw} alias {VIP}/32")
        assert code == 0, err
        sh.close()


def _carp_state(lab, host):
    out = lab.exec(host, ["ifconfig", "em0"]).stdout
    return next(line.split()[1] for line in out.splitlines() if line.strip().startswith("carp:"))


def _wait_state(lab, host, state, limit=10.0):
    try:
        return waiting.wait_until(lambda: _carp_state(lab, host) == state, limit, f"{host} {state}", every=0.1)
    except waiting.TimedOut:
        return False


def _answers(lab, probe_host="client"):
    return lab.exec(probe_host, ["/bin/ping", "-n", "-c", "1", "-W", "1", VIP]).returncode == 0


def test_root_namespace_untouched(lab):
    before = root_namespace_snapshot()
    lab.up()  # idempotent; the session lab is already up
    after = root_namespace_snapshot()
    assert before == after
    for line in after["addrs"] + after["routes"]:
        assert "em0" not in line and "veth" not in line
    listeners = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    for host in lab.status():
        assert f"127.0.0.1:{host.ssh_port}" in listeners


def test_status_lists_endpoints(lab):
    hosts = {h.name: h for h in lab.status()}
    assert {"gateway", "client", "server-1", "server-2"} <= set(hosts)
    s1 = hosts["server-1"]
    assert (s1.address, s1.ssh_host, s1.ssh_port) == ("192.0.2.11", "127.0.0.1", 23011)
    assert s1.host_key_fingerprint.startswith("256 SHA256:")
    assert os.path.exists(s1.user("root")["key_path"])


def test_failover_within_bound_and_failback_with_preempt(fresh_lab):
    lab = fresh_lab
    _configure(lab, (0, 100))
    assert _wait_state(lab, "server-1", "MASTER") and _wait_state(lab, "server-2", "BACKUP")
    assert _answers(lab)
    probe = subprocess.Popen(
        ["nsenter", "--net=/run/netns/" + lab.ns("client"), "/bin/ping", "-n", "-D", "-O", "-i", "0.1",
         "-W", "1", "-w", "12", VIP], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(probe.stdout or []), daemon=True).start()

    def replies() -> list[float]:
        return [float(line[1:].split("]")[0]) for line in list(lines) if "bytes from" in line]

    wait_until(replies, limit=5)  # the VIP answers the client before the master goes
    t_down = time.time()
    lab.fault("server-1", "link-down")
    assert _wait_state(lab, "server-2", "MASTER", limit=6)
    after = wait_until(lambda: [t for t in replies() if t > t_down], limit=5)  # ... and again from server-2
    probe.terminate()
    outage = after[0] - t_down
    assert outage <= 3 * 1 + 1, f"VIP answered from server-2 only after {outage:.2f} s"
    lab.fault("server-1", "link-up")
    assert _wait_state(lab, "server-1", "MASTER", limit=8), "no failback with preempt"
    assert _wait_state(lab, "server-2", "BACKUP", limit=3)


def test_no_failback_without_preempt(fresh_lab):
    lab = fresh_lab
    _configure(lab, (0, 100), preempt=False)
    assert _wait_state(lab, "server-1", "MASTER")
    lab.fault("server-1", "link-down")
    assert _wait_state(lab, "server-2", "MASTER", limit=6)
    lab.fault("server-1", "link-up")
    assert _wait_state(lab, "server-1", "BACKUP", limit=3)
    # Without preempt nothing may change for longer than a master-down interval: watch it stay so.
    watch_until = time.monotonic() + 4
    while time.monotonic() < watch_until:
        assert (_carp_state(lab, "server-1"), _carp_state(lab, "server-2")) == ("BACKUP", "MASTER")


def test_wrong_password_gives_two_masters(fresh_lab):
    _configure(fresh_lab, (0, 100), password=("secret", "other"))
    assert _wait_state(fresh_lab, "server-1", "MASTER")
    assert _wait_state(fresh_lab, "server-2", "MASTER", limit=8)


def test_demotion_moves_master(fresh_lab):
    lab = fresh_lab
    _configure(lab, (0, 100))
    assert _wait_state(lab, "server-1", "MASTER")
    lab.exec("server-1", ["sysctl", "net.inet.carp.demotion=240"], check=True)
    assert _wait_state(lab, "server-2", "MASTER", limit=8)
    lab.exec("server-1", ["sysctl", "net.inet.carp.demotion=-240"], check=True)
    assert _wait_state(lab, "server-1", "MASTER", limit=8)


def test_reboot_keeps_only_what_is_persisted(fresh_lab):
    lab = fresh_lab
    sh = Shell(lab, "server-1")
    sh.run("sysrc -f /boot/loader.conf carp_load=YES; kldload carp; sysctl net.inet.carp.preempt=1")
    sh.run("echo net.inet.carp.preempt=1 >> /etc/sysctl.conf")
    sh.run('sysrc ifconfig_em0_alias0="inet vhid 1 advskew 0 pass secret alias 192.0.2.100/32"')
    sh.run("sysctl net.inet.carp.log=0")  # runtime only
    sh.close()
    lab.reboot("server-1")
    sh = Shell(lab, "server-1")
    try:
        assert sh.run("kldstat -q -m carp")[0] == 0
        assert sh.run("sysctl -n net.inet.carp.preempt")[1] == "1\n"
        assert sh.run("sysctl -n net.inet.carp.log")[1] == "1\n"
        assert "vhid 1 advbase 1 advskew 0" in sh.run("ifconfig em0")[1]
    finally:
        sh.close()
    assert _wait_state(lab, "server-1", "MASTER")
    lab.reset_host("server-1")
    lab.reboot("server-1")
    assert lab.exec("server-1", ["kldstat", "-q", "-m", "carp"]).returncode == 1


def test_faults_sshd_and_linux(fresh_lab):
    import paramiko

    lab = fresh_lab
    lab.fault("server-2", "linux")
    sh = Shell(lab, "server-2")
    assert sh.run("uname -s")[1] == "Linux\n"
    assert sh.run("kldload carp")[0] == 127
    sh.close()
    lab.fault("server-2", "sshd-stop")
    with pytest.raises((OSError, paramiko.SSHException)):
        Shell(lab, "server-2")
    lab.fault("server-2", "sshd-hang")
    t0 = time.monotonic()
    with pytest.raises((OSError, paramiko.SSHException, EOFError)):
        c = paramiko.SSHClient()
        c.connect("127.0.0.1", port=lab.host("server-2").ssh_port, timeout=2, banner_timeout=2, auth_timeout=2)
    assert time.monotonic() - t0 < 5
    old = lab.host("server-2").host_key_fingerprint
    lab.fault("server-2", "hostkey-change")
    assert lab.host("server-2").host_key_fingerprint != old
    lab.fault("server-2", "clear")
    assert lab.host("server-2").host_key_fingerprint == old
    sh = Shell(lab, "server-2")
    assert sh.run("uname -s")[1] == "FreeBSD\n"
    sh.close()


def test_netem_delays_ssh(fresh_lab):
    lab = fresh_lab
    lab.fault("server-2", "netem", "150", "0")
    t0 = time.monotonic()
    sh = Shell(lab, "server-2")
    sh.run("true")
    sh.close()
    assert time.monotonic() - t0 > 0.6  # several round trips through the delayed link
    lab.fault("server-2", "clear")


def test_rogue_speaker_takes_vip(fresh_lab):
    lab = fresh_lab
    _configure(lab, (50, 100))
    assert _wait_state(lab, "server-1", "MASTER")
    lab.fault("client", "rogue-carp", "1", "secret", VIP, "0")
    assert _wait_state(lab, "server-1", "BACKUP", limit=8)
    lab.fault("client", "clear")
    assert _wait_state(lab, "server-1", "MASTER", limit=8)


def test_down_leaves_nothing_behind():
    require_lab()
    before = root_namespace_snapshot()
    small = Lab(LabConfig(name="carpdown", base_port=24000, servers=2))
    small.up()
    small.up()  # idempotent
    assert Shell(small, "server-1").run("uname -s")[1] == "FreeBSD\n"
    small.down()
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith("carpdown-")]
    assert not os.path.exists(small.dir)
    assert subprocess.run(["pgrep", "-f", small.dir], capture_output=True).returncode == 1
    assert root_namespace_snapshot() == before
