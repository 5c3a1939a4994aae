"""Every emulated FreeBSD command, over real SSH, against shared/reference/freebsd-carp.md."""

import re

import pytest

from lab.pytest_plugin import Shell
from tests.helpers import wait_until

pytestmark = pytest.mark.lab


@pytest.fixture
def s1(fresh_lab):
    shell = Shell(fresh_lab, "server-1")
    yield shell
    shell.close()


def test_done_when_transcript(s1):
    code, out, err = s1.run("kldload carp; kldstat -m carp; kldload carp; echo $?")
    assert re.fullmatch(r"Id  Refs Name\n\d{3}    1 carp\n1\n", out)
    assert err == "kldload: can't load carp: module already loaded or in kernel\n"


def test_kldload_forms(s1):
    assert s1.run("kldload -v carp") [1].startswith("Loaded carp, id=")
    assert s1.run("kldload -nv carp") == (0, "carp is already loaded\n", "")
    assert s1.run("kldload -n carp") == (0, "", "")
    assert s1.run("kldload") == (1, "", "usage: kldload [-nqv] file ...\n")


def test_kldstat_checks(s1):
    assert s1.run("kldstat -q -m carp") == (1, "", "")
    assert s1.run("kldstat -m carp") == (1, "", "kldstat: can't find module carp: No such file or directory\n")
    s1.run("kldload carp")
    assert s1.run("kldstat -q -m carp") == (0, "", "")
    code, out, _ = s1.run("kldstat")
    assert out.splitlines()[0].split() == ["Id", "Refs", "Address", "Size", "Name"]
    assert out.rstrip().endswith("carp.ko")


def test_kldunload_busy_and_missing(s1):
    assert s1.run("kldunload carp") == (1, "", "kldunload: can't find file carp\n")
    s1.run("kldload carp; ifconfig em0 inet vhid 7 pass x alias 192.0.2.77/32")
    assert s1.run("kldunload carp") == (1, "", "kldunload: can't unload file: Device busy\n")
    s1.run("ifconfig em0 inet 192.0.2.77/32 -alias")
    assert s1.run("kldunload carp")[0] == 0


def test_sysrc(s1):
    f = "-f /boot/loader.conf"
    assert s1.run(f"sysrc {f} -n carp_load") == (1, "", "sysrc: unknown variable 'carp_load'\n")
    assert s1.run(f"sysrc {f} carp_load=YES") == (0, "carp_load:  -> YES\n", "")
    assert s1.run(f"sysrc {f} carp_load=YES") == (0, "carp_load: YES -> YES\n", "")
    assert s1.run(f"sysrc {f} -n carp_load") == (0, "YES\n", "")
    assert s1.run(f"sysrc {f} -c carp_load=YES") == (0, "", "")
    assert s1.run(f"sysrc {f} -c carp_load=NO") == (1, "", "")
    assert s1.run("grep -c '^carp_load=\"YES\"$' /boot/loader.conf")[1] == "1\n"
    assert s1.run("sysrc -n hostname") == (0, "server-1\n", "")


def test_sysctl_exists_only_with_carp(s1):
    assert s1.run("sysctl net.inet.carp.preempt") == (1, "", "sysctl: unknown oid 'net.inet.carp.preempt'\n")
    s1.run("kldload carp")
    assert s1.run("sysctl net.inet.carp.preempt") == (0, "net.inet.carp.preempt: 0\n", "")
    assert s1.run("sysctl net.inet.carp.preempt=1") == (0, "net.inet.carp.preempt: 0 -> 1\n", "")
    assert s1.run("sysctl -n net.inet.carp.allow") == (0, "1\n", "")
    assert s1.run("sysctl net.inet.carp.demotion=240")[1] == "net.inet.carp.demotion: 0 -> 240\n"
    assert s1.run("sysctl net.inet.carp.demotion=-240")[1] == "net.inet.carp.demotion: 240 -> 0\n"
    names = [line.split(":")[0] for line in s1.run("sysctl net.inet.carp")[1].splitlines()]
    assert {"net.inet.carp.allow", "net.inet.carp.preempt", "net.inet.carp.demotion", "net.inet.carp.log",
            "net.inet.carp.senderr_demotion_factor", "net.inet.carp.ifdown_demotion_factor"} <= set(names)


def test_ifconfig_errors(s1):
    assert s1.run("ifconfig em9") == (1, "", "ifconfig: interface em9 does not exist\n")
    assert s1.run("ifconfig -l") == (0, "em0 lo0\n", "")
    assert s1.run("ifconfig em0 advskew 10")[2] == "ifconfig: advskew requires vhid\n"
    s1.run("kldload carp")
    assert s1.run("ifconfig em0 vhid 300 pass x alias 192.0.2.9/32")[2] == \
        "ifconfig: vhid must be greater than 0 and less than 255\n"
    assert s1.run("ifconfig em0 vhid 3 state sideways")[2] == "ifconfig: unknown state\n"
    assert s1.run("ifconfig em0 inet vhid 3 advskew 255 pass x alias 192.0.2.9/32") == \
        (1, "", "ifconfig: SIOCSVH: Invalid argument\n")


def test_vhid_needs_carp_loaded(s1):
    code, _, err = s1.run("ifconfig em0 inet vhid 1 pass x alias 192.0.2.100/32")
    assert code == 1 and err.startswith("ifconfig: SIOCSVH: ")


def test_identity_and_routes(s1):
    assert s1.run("uname -s") == (0, "FreeBSD\n", "")
    assert s1.run("uname -r") == (0, "14.3-RELEASE\n", "")
    assert s1.run("freebsd-version -ku") == (0, "14.3-RELEASE\n14.3-RELEASE\n", "")
    assert "    gateway: 192.0.2.1\n" in s1.run("route -n get default")[1]
    assert re.search(r"^default\s+192\.0\.2\.1\s+UGS\s+em0", s1.run("netstat -rn")[1], re.M)
    code, out, _ = s1.run("ping -c 1 -t 2 192.0.2.1")
    assert code == 0 and "1 packets transmitted, 1 packets received, 0.0% packet loss" in out
    code, out, _ = s1.run("ping -c 1 -t 1 192.0.2.99")
    assert code == 2 and "1 packets received" not in out


def test_shell_is_sh_and_files_are_per_host(fresh_lab, s1):
    assert s1.run("echo $0")[1] == "/bin/sh\n"
    s1.run("sysrc -f /boot/loader.conf carp_load=YES")
    s2 = Shell(fresh_lab, "server-2")
    try:
        assert s2.run("sysrc -f /boot/loader.conf -n carp_load")[0] == 1
        assert s2.run("hostname")[1] == "server-2\n"
    finally:
        s2.close()


def test_privilege_users(fresh_lab):
    adm = Shell(fresh_lab, "server-1", user="carpadm")
    ask = Shell(fresh_lab, "server-1", user="carpask", password="carplab-ask")
    try:
        assert adm.run("kldload carp")[2] == "kldload: can't load carp: Operation not permitted\n"
        assert adm.run("sudo -n kldload -v carp")[1].startswith("Loaded carp")
        assert adm.run("doas -n sysctl -n net.inet.carp.allow")[1] == "1\n"
        code, _, err = ask.run("sudo -n kldstat")
        assert code == 1 and "password" in err
        assert ask.run("doas -n true")[0] != 0
    finally:
        adm.close()
        ask.close()


@pytest.mark.parametrize(("version", "header", "has_dscp"), [
    ("11.2-RELEASE", "Id Refs Address            Size     Name", False),
    ("14.3-RELEASE", "Id Refs Address                Size Name", True),
])
def test_version_specific_outputs(tmp_path, monkeypatch, capsys, version, header, has_dscp):
    """kldstat's column layout changed after 11.x, and net.inet.carp.dscp does not exist on 11.2."""
    import json

    from lab.freebsd import kld, sysctl
    from lab.freebsd.state import Host

    (tmp_path / "host.json").write_text(json.dumps({"name": "old", "version": version, "hostdir": str(tmp_path)}))
    monkeypatch.setenv("CARPLAB_HOST_DIR", str(tmp_path))
    host = Host()
    with host.locked() as state:
        state["carp_loaded"] = True
        state["carp_fileid"], state["carp_modid"] = 6, 501
    assert kld.kldstat(host, []) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == header and lines[-1].endswith(" carp.ko")
    assert sysctl.sysctl(host, ["net.inet.carp"]) == 0
    assert ("net.inet.carp.dscp" in capsys.readouterr().out) is has_dscp


def test_command_log_records_each_session_command(fresh_lab, s1):
    s1.run("uname -r")
    assert fresh_lab.log("server-1")[-1].endswith(" root uname -r")


READS = ["kldstat -m carp", "sysctl net.inet.carp.preempt", "ifconfig em9", "sysrc -f /boot/loader.conf -n carp_load",
         "uname -s; uname -r", "freebsd-version -ku", "kldload", "ifconfig -l", "route -n get default"]


def test_commands_answer_the_same_through_the_emulator_daemon_and_without_it(fresh_lab, s1):
    """Each command runs as a fork of the host's emulator daemon (lab/freebsd/zygote.py); when the daemon is
    gone, the command starts the emulator itself. Outputs and exit codes are the same either way."""
    through_daemon = [s1.run(command) for command in READS]
    daemon = fresh_lab.host_pids("server-1")["emu"]
    assert any(int(pid) == daemon for pid in s1.run("ps -e -o pid=")[1].split())
    try:
        fresh_lab.stop_emulator("server-1")
        assert [s1.run(command) for command in READS] == through_daemon
    finally:
        fresh_lab.restart_emulators()
    assert through_daemon[0] == (1, "", "kldstat: can't find module carp: No such file or directory\n")


def test_a_command_whose_caller_went_away_is_ended(fresh_lab, s1):
    """A long command (the drill's probe) must not outlive its SSH session: its caller's end ends it."""
    _, stdout, _ = s1.client.exec_command("ping -c 100 -i 0.1 192.0.2.1")
    stdout.channel.recv(64)  # it runs
    daemon = fresh_lab.host_pids("server-1")["emu"]
    assert fresh_lab.exec("server-1", ["pgrep", "-P", str(daemon)]).stdout.strip()  # the command, a fork
    stdout.channel.close()
    wait_until(lambda: not fresh_lab.exec("server-1", ["pgrep", "-P", str(daemon)]).stdout.strip(), limit=5,
               every=0.1, what="the command to end with its SSH session")
