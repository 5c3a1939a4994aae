"""The lab's CARP transitions, as FreeBSD reports them: the kernel's `carp:` line in /var/log/messages, devd's
notify rules from /usr/local/etc/devd/*.conf run with $system $subsystem $type (once devd has read them), rule
files that survive `lab reboot`, and a cut link going straight to INIT."""

import re

import pytest

from lab.pytest_plugin import Shell
from tests.helpers import wait_until

pytestmark = pytest.mark.lab
RULE = """# a test rule
notify 10 {
	match "system"		"CARP";
	match "type"		"(MASTER|BACKUP|INIT)";
	action "echo system=$system subsystem=$subsystem type=$type >> /var/log/devd-seen";
};
"""
KERNEL_LINE = re.compile(
    r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d server-1 kernel: carp: 1@em0: (\w+) -> (\w+) \((.+)\)$"
)


@pytest.fixture
def s1(fresh_lab):
    shell = Shell(fresh_lab, "server-1")
    yield shell
    shell.close()


def _carp(shell: Shell, skew: int = 0) -> None:
    shell.run("kldload -n carp; sysctl net.inet.carp.preempt=1")
    assert shell.run(f"ifconfig em0 inet vhid 1 advskew {skew} pass secret alias 192.0.2.100/32")[0] == 0


def _seen(shell: Shell) -> list[str]:
    return shell.run("cat /var/log/devd-seen 2>/dev/null")[1].splitlines()


def _kernel_lines(shell: Shell) -> list[tuple[str, str, str]]:
    lines = shell.run("cat /var/log/messages")[1].splitlines()
    return [m.groups() for line in lines if (m := KERNEL_LINE.match(line))]  # type: ignore[misc]


def test_a_transition_is_logged_by_the_kernel_and_runs_the_rules_devd_has_read(s1):
    s1.run(f"mkdir -p /usr/local/etc/devd && printf '%s' '{RULE}' > /usr/local/etc/devd/test.conf")
    _carp(s1)
    wait_until(lambda: ("BACKUP", "MASTER", "master timed out") in _kernel_lines(s1), limit=15)
    assert _kernel_lines(s1)[0] == ("INIT", "BACKUP", "initialization complete")
    assert _seen(s1) == []  # the rule file is there, but devd has not read it yet
    assert s1.run("service devd restart") == (0, "Stopping devd.\nStarting devd.\n", "")
    s1.run("ifconfig em0 -alias 192.0.2.100")  # the vhid goes away: INIT
    wait_until(lambda: _seen(s1), limit=10)
    assert _seen(s1) == ["system=CARP subsystem=1@em0 type=INIT"]


def test_reboot_keeps_the_rule_files_and_devd_reads_them_at_boot(fresh_lab, s1):
    s1.run(f"mkdir -p /usr/local/etc/devd && printf '%s' '{RULE}' > /usr/local/etc/devd/test.conf")
    s1.run("sysrc -f /boot/loader.conf carp_load=YES; "
           "sysrc ifconfig_em0_alias0='inet vhid 1 advskew 0 pass secret alias 192.0.2.100/32'")
    fresh_lab.reboot("server-1")
    after = Shell(fresh_lab, "server-1")
    try:
        assert after.run("cat /usr/local/etc/devd/test.conf")[1] == RULE
        wait_until(lambda: "system=CARP subsystem=1@em0 type=BACKUP" in _seen(after), limit=15)
    finally:
        after.close()


def test_a_cut_link_goes_straight_to_init(fresh_lab, s1):
    def kernel_lines() -> list[tuple[str, str, str]]:  # from the console: SSH crosses the cut link
        lines = fresh_lab.exec("server-1", ["cat", "/var/log/messages"]).stdout.splitlines()
        return [m.groups() for line in lines if (m := KERNEL_LINE.match(line))]  # type: ignore[misc]

    _carp(s1)
    wait_until(lambda: ("BACKUP", "MASTER", "master timed out") in kernel_lines(), limit=15)
    fresh_lab.fault("server-1", "link-down")
    assert kernel_lines()[-1] == ("MASTER", "INIT", "hardware interface down")
    fresh_lab.fault("server-1", "link-up")
    wait_until(lambda: kernel_lines()[-1] == ("BACKUP", "MASTER", "master timed out"), limit=15)
    assert ("INIT", "BACKUP", "initialization complete") in kernel_lines()[-2:]


def test_tail_follows_a_growing_log_within_a_fraction_of_a_second(s1):
    """FreeBSD's tail -F wakes on kqueue; the lab's must not lag a second behind (GNU tail polls on overlays)."""
    s1.run("mkdir -p /var/log/carpweb && : > /var/log/carpweb/t")
    code, out, _ = s1.run("(sleep 0.1; echo grew >> /var/log/carpweb/t) & timeout 0.6 tail -n 0 -F /var/log/carpweb/t")
    assert out == "grew\n"
