"""Pure unit tests: parsers against the reference transcripts, the step judgements, and quoting."""

import pytest

from wizard.carp import facts
from wizard.carp import steps as s

IFCONFIG_14 = """em0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\tether 08:00:27:aa:bb:cc
\tinet 192.0.2.11 netmask 0xffffff00 broadcast 192.0.2.255
\tinet 192.0.2.100 netmask 0xffffffff broadcast 192.0.2.100 vhid 1
\tcarp: MASTER vhid 1 advbase 1 advskew 0
\t      peer 224.0.0.18 peer6 ff02::12
\tstatus: active
lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
"""
T = s.Target("server-1", "192.0.2.11", "192.0.2.0/24", "192.0.2.1", "192.0.2.100", 1, "em0", "20260101T000000")


def r(code=0, out="", err=""):
    return s.CommandResult(code, out, err)


def test_parse_ifconfig_reads_addresses_vhids_and_carp_state():
    em0 = facts.parse_ifconfig(IFCONFIG_14)["em0"]
    assert [(a.address, a.prefix, a.vhid) for a in em0.inet] == [("192.0.2.11", 24, None), ("192.0.2.100", 32, 1)]
    assert [(c.state, c.vhid, c.advbase, c.advskew) for c in em0.carp] == [("MASTER", 1, 1, 0)]
    assert em0.status == "active"


def test_parsers_of_the_reference_transcripts():
    assert facts.parse_route_gateway("   route to: default\n    gateway: 192.0.2.1\n") == "192.0.2.1"
    assert facts.parse_sysrc_change("carp_load:  -> YES") == ("", "YES")
    assert facts.parse_sysctl_change("net.inet.carp.demotion: 0 -> 240") == ("0", "240")
    assert facts.parse_sysrc_value(1, "") is None
    assert facts.parse_sysctl_int(1, "") is None and facts.parse_sysctl_int(0, "1\n") == 1
    assert facts.parse_freebsd_major("13.2-RELEASE-p4") == 13


def test_loader_step_changes_only_when_needed():
    done = s._judge_loader(T, [r(0, "YES\n")])
    assert isinstance(done, s.Outcome) and done.status == "ok"
    change = s._judge_loader(T, [r(1, "", "sysrc: unknown variable 'carp_load'\n")])
    assert isinstance(change, s.Change)
    assert change.commands[-1] == "sysrc -f /boot/loader.conf carp_load=YES"
    assert "loader.conf.carpweb-20260101T000000" in change.commands[0]


def test_kldload_step_is_idempotent():
    loaded, missing = s._judge_kldload(T, [r(0)]), s._judge_kldload(T, [r(1)])
    assert isinstance(loaded, s.Outcome) and loaded.status == "ok"
    assert isinstance(missing, s.Change) and missing.commands == ["kldload -n carp"]


def test_interface_step_explains_a_missing_interface():
    out = s._judge_interface(T, [r(0, "em0 lo0\n"), r(1, "", "ifconfig: interface em9 does not exist\n")])
    assert out.status == "failed" and "has: em0 lo0" in out.message


def test_vip_already_ours_is_fine_on_a_rerun():
    assert s._judge_vip_free(T, [r(0, IFCONFIG_14), r(0)]).status == "ok"
    foreign = IFCONFIG_14.replace("192.0.2.100 netmask 0xffffffff broadcast 192.0.2.100 vhid 1", "192.0.2.12 "
                                  "netmask 0xffffff00")
    assert s._judge_vip_free(T, [r(0, foreign), r(0)]).status == "failed"


def test_vhid_used_for_another_address_fails():
    other = IFCONFIG_14.replace("inet 192.0.2.100", "inet 192.0.2.101")
    assert s._judge_vhid_free(T, [r(0, other)]).status == "failed"


@pytest.mark.parametrize("iface", ["em0; reboot", "em0 $(id)", "a" * 20, "em0\nid"])
def test_hostile_interface_names_never_reach_a_command(iface):
    from django.core.exceptions import ValidationError

    from wizard.carp.validation import validate_interface

    with pytest.raises(ValidationError):
        validate_interface(iface)


def test_commands_quote_every_value():
    hostile = s.Target("x", "1.2.3.4", "1.2.3.0/24", "1.2.3.1; rm -rf /", "1.2.3.5", 1, "em0", "t")
    gateway_cmd = s.STEPS[3].reads(hostile)[1]
    assert gateway_cmd == "ping -c 1 -t 2 '1.2.3.1; rm -rf /'"


def test_carp_password_limit_is_20_bytes():
    from django.core.exceptions import ValidationError

    from wizard.carp.validation import validate_carp_password

    validate_carp_password("a" * 20)
    with pytest.raises(ValidationError, match="20 bytes"):
        validate_carp_password("a" * 21)
