"""The carp layer's facts and node steps as data: recorded outputs -> parsed values -> verdicts and commands."""

import pytest

from wizard.carp import facts
from wizard.carp import steps as s
from wizard.carp.facts import CommandResult

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
V = s.Vip("em0", 1, ("192.0.2.100/32",), key="1")
T = s.Target("server-1", "192.0.2.11", "192.0.2.0/24", "192.0.2.1", "em0", "20260101T000000", vips=(V,), vip=V)


def r(code=0, out="", err=""):
    return CommandResult(code, out, err)


def judge(step_name, *results, t=T):
    """Run a step's judgement on recorded results, parsing them with the step's own facts."""
    step = next(x for x in s.PREFLIGHT + s.PREPARE + s.VERIFY if x.name == step_name)
    return step.judge(t, facts.read_all(step.reads(t), list(results)), list(results))


def test_ifconfig_fact_reads_addresses_vhids_and_carp_state():
    em0 = facts.Ifconfig("em0").parse(r(0, IFCONFIG_14))["em0"]
    assert [(a.address, a.prefix, a.vhid) for a in em0.inet] == [("192.0.2.11", 24, None), ("192.0.2.100", 32, 1)]
    assert [(c.state, c.vhid, c.advbase, c.advskew) for c in em0.carp] == [("MASTER", 1, 1, 0)]
    assert em0.status == "active" and em0.carp_status(1) == em0.carp[0] and em0.has_carp_address("192.0.2.100", 1)
    assert facts.Ifconfig("em9").parse(r(1, "", "ifconfig: interface em9 does not exist")) == {}


def test_the_carp_sysctl_tree_reads_every_variable_in_one_command():
    listing = ("net.inet.carp.allow: 1\nnet.inet.carp.dscp: 56\nnet.inet.carp.preempt: 0\nnet.inet.carp.log: 1\n"
               "net.inet.carp.demotion: -240\nnet.inet.carp.senderr_demotion_factor: 240\n")
    tree = facts.SysctlTree("net.inet.carp")
    assert tree.command() == "sysctl net.inet.carp"
    values = tree.parse(r(0, listing))
    assert values[facts.PREEMPT] == 0 and values[facts.DEMOTION] == -240 and len(values) == 6
    assert tree.parse(r(1, "", "sysctl: unknown oid 'net.inet.carp'\n")) == {}


def test_every_fact_quotes_its_values():
    hostile = "em0; reboot"
    assert facts.Ifconfig(hostile).command() == "ifconfig 'em0; reboot'"
    assert facts.Ping("1.2.3.1; rm -rf /", 2).command() == "ping -c 1 -t 2 '1.2.3.1; rm -rf /'"
    assert facts.FileText("/etc/rc.conf; id").command() == "cat '/etc/rc.conf; id'"
    assert facts.SysrcValue("x$(id)", "/boot/loader.conf").command() == "sysrc -f /boot/loader.conf -n 'x$(id)'"


def test_loader_step_changes_only_when_needed():
    assert judge("loader-conf", r(0, "YES\n")).status == s.Verdict.OK
    change = judge("loader-conf", r(1, "", "sysrc: unknown variable 'carp_load'\n"))
    assert isinstance(change, s.Change)
    assert change.commands[-1] == "sysrc -f /boot/loader.conf carp_load=YES"
    assert "loader.conf.carpweb-20260101T000000" in change.commands[0]


def test_kldload_step_is_idempotent():
    assert judge("kldload", r(0)).status == s.Verdict.OK
    missing = judge("kldload", r(1))
    assert isinstance(missing, s.Change) and missing.commands == ["kldload -n carp"]


def test_interface_step_explains_a_missing_interface():
    out = judge("interface", r(0, "em0 lo0\n"), r(1, "", "ifconfig: interface em9 does not exist\n"))
    assert out.status == s.Verdict.FAILED and "has: em0 lo0" in out.message


def test_interface_step_tells_a_failed_listing_from_a_missing_interface():
    out = judge("interface", r(1, "", "ifconfig: Resource temporarily unavailable\n"), r(1, "", ""))
    assert out.status == s.Verdict.FAILED
    assert out.message.startswith("`ifconfig -l` on server-1 listed no interface (exit 1: ifconfig: Resource "
                                  "temporarily unavailable)")


def test_vip_already_ours_is_fine_on_a_rerun():
    assert judge("vip-free", r(0, IFCONFIG_14), r(0)).status == s.Verdict.OK
    foreign = IFCONFIG_14.replace("192.0.2.100 netmask 0xffffffff broadcast 192.0.2.100 vhid 1",
                                  "192.0.2.12 netmask 0xffffff00")
    assert judge("vip-free", r(0, foreign), r(0)).status == s.Verdict.FAILED


def test_vhid_used_for_another_address_fails():
    assert judge("vhid-free", r(0, IFCONFIG_14.replace("inet 192.0.2.100", "inet 192.0.2.101"))).status == "failed"


IFCONFIG_V6 = IFCONFIG_14.replace("\tstatus: active", "\tinet6 fe80::1%em0 prefixlen 64 scopeid 0x1\n"
                                  "\tinet6 2001:db8::11 prefixlen 64\n"
                                  "\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>\n\tstatus: active")
V6 = s.Vip("em0", 11, ("2001:db8::100/64",), key="11")
UNI = s.Vip("em0", 12, ("192.0.2.101/32",), peer="192.0.2.12", key="12")


def test_ipv6_service_ip_needs_ipv6_on_and_a_node_address_in_its_prefix():
    t = T.for_vip(V6)
    uname = r(0, "FreeBSD\n14.1-RELEASE\n")
    assert judge("vip-interface", r(0, "em0 lo0\n"), r(0, IFCONFIG_V6), uname, t=t).status == "ok"
    off = IFCONFIG_V6.replace("nd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>", "nd6 options=29<PERFORMNUD,IFDISABLED,"
                              "AUTO_LINKLOCAL>")
    out = judge("vip-interface", r(0, "em0 lo0\n"), r(0, off), uname, t=t)
    assert out.status == "failed" and "ifconfig em0 inet6 -ifdisabled" in out.message
    other = T.for_vip(s.Vip("em0", 11, ("2001:db8:1::100/64",), key="11"))
    out = judge("vip-interface", r(0, "em0 lo0\n"), r(0, IFCONFIG_V6), uname, t=other)
    assert out.status == "failed" and "no IPv6 address in 2001:db8:1::/64" in out.message


def test_unicast_is_refused_before_14_with_the_reason_and_needs_a_peer_that_answers():
    t = T.for_vip(UNI)
    old = judge("vip-interface", r(0, "em0 lo0\n"), r(0, IFCONFIG_14), r(0, "FreeBSD\n13.2-RELEASE\n"), r(0), t=t)
    assert old.status == "failed" and "needs 14.0 or later" in old.message and "multicast" in old.message
    silent = judge("vip-interface", r(0, "em0 lo0\n"), r(0, IFCONFIG_14), r(0, "FreeBSD\n14.1-RELEASE\n"), r(2),
                   t=t)
    assert silent.status == "failed" and "192.0.2.12 does not answer" in silent.message
    fine = judge("vip-interface", r(0, "em0 lo0\n"), r(0, IFCONFIG_14), r(0, "FreeBSD\n14.1-RELEASE\n"), r(0), t=t)
    assert fine.status == "ok" and "unicast to 192.0.2.12" in fine.message


def test_inet6_and_the_peer_line_are_read():
    text = IFCONFIG_V6.replace("\tstatus: active", "\tinet6 2001:db8::100 prefixlen 64 vhid 11\n"
                               "\tcarp: BACKUP vhid 11 advbase 1 advskew 100\n"
                               "\t      peer 192.0.2.12 peer6 ff02::12\n\tstatus: active")
    em0 = facts.Ifconfig("em0").parse(r(0, text))["em0"]
    assert em0.has_carp_address("2001:0db8::100", 11) and not em0.ifdisabled
    assert [a.address for a in em0.own_addresses6()] == ["2001:db8::11"]
    status = em0.carp_status(11)
    assert status is not None and (status.peer, status.peer6) == ("192.0.2.12", "ff02::12")


def test_privilege_that_asks_for_a_password_is_explained():
    out = judge("privilege", r(1, "", "sudo: a password is required\n"))
    assert out.status == s.Verdict.FAILED and "NOPASSWD" in out.message


@pytest.mark.parametrize("iface", ["em0; reboot", "em0 $(id)", "a" * 20, "em0\nid"])
def test_hostile_interface_names_are_refused(iface):
    from django.core.exceptions import ValidationError

    from wizard.validation import validate_interface

    with pytest.raises(ValidationError):
        validate_interface(iface)


def test_carp_password_limit_is_19_bytes_as_ifconfig_keeps():
    from django.core.exceptions import ValidationError

    from wizard.validation import validate_carp_password

    validate_carp_password("a" * 19)
    with pytest.raises(ValidationError, match="at most 19 bytes"):
        validate_carp_password("a" * 20)


IFCONFIG_NO_CARP = IFCONFIG_14.replace("\tinet 192.0.2.100 netmask 0xffffffff broadcast 192.0.2.100 vhid 1\n", "") \
    .replace("\tcarp: MASTER vhid 1 advbase 1 advskew 0\n\t      peer 224.0.0.18 peer6 ff02::12\n", "")
AD = "IP {} > 224.0.0.18: CARPv2-advertise 36: vhid={} advbase=1 advskew=0 authlen=7 counter=1\n"


def test_carp_heard_parses_tcpdump_lines_and_knows_when_it_could_not_listen():
    heard = facts.CarpHeard("em0", 3)
    assert heard.command() == "timeout 3 tcpdump -nlt -i em0 -c 50 -T carp 'ip proto 112 or ip6 proto 112'"
    ads = heard.parse(r(124, AD.format("192.0.2.12", 1) + "IP6 fe80::5459:e7ff:fea2:cb7b > ff02::12: CARPv2-adver"
                             "tise 36: vhid=8 advbase=2 advskew=100 authlen=7 counter=9\nnoise\n"))
    assert ads == [facts.Advertisement("192.0.2.12", 1, 1, 0),
                   facts.Advertisement("fe80::5459:e7ff:fea2:cb7b", 8, 2, 100)]
    assert heard.parse(r(1, "", "tcpdump: em0: You don't have permission to capture on that device\n")) is None
    assert facts.CarpHeard("em0; id").command().startswith("timeout 3 tcpdump -nlt -i 'em0; id' ")


def test_listening_finds_a_foreign_speaker_of_the_vhid_and_warns_when_an_existing_one_is_silent():
    new = T.for_vip(V)
    t = s.Target(**{**new.__dict__, "cluster_hosts": ("192.0.2.11", "192.0.2.12"), "vip": None})
    # a node that runs the vhid itself: its election is Check's business
    assert judge("carp-heard", r(0, IFCONFIG_14), r(124, AD.format("192.0.2.99", 1)), t=t).status == "ok"
    # another device on the segment advertises the vhid: a collision
    out = judge("carp-heard", r(0, IFCONFIG_NO_CARP), r(124, AD.format("192.0.2.99", 1)), t=t)
    assert out.status == "failed" and "192.0.2.99" in out.message and "Choose another vhid" in out.message
    # the other node's advertisement is ours; a new vhid heard from nobody is free
    assert judge("carp-heard", r(0, IFCONFIG_NO_CARP), r(124, AD.format("192.0.2.12", 1)), t=t).status == "ok"
    assert judge("carp-heard", r(0, IFCONFIG_NO_CARP), r(124, ""), t=t).status == "ok"
    # an existing vhid that this node never hears: multicast blocked, a warning (not a stop)
    existing = s.Vip("em0", 1, ("192.0.2.100/32",), key="1", existing=True)
    t2 = s.Target(**{**t.__dict__, "vips": (existing,)})
    out = judge("carp-heard", r(0, IFCONFIG_NO_CARP), r(124, ""), t=t2)
    assert out.status == "warning" and "multicast may be blocked" in out.message
    # tcpdump missing or refused: said, not failed
    out = judge("carp-heard", r(0, IFCONFIG_NO_CARP), r(127, "", "sh: tcpdump: not found\n"), t=t2)
    assert out.status == "ok" and "could not listen on em0 (sh: tcpdump: not found)" in out.message
    # unicast service IPs are not listened for
    t3 = s.Target(**{**t.__dict__, "vips": (UNI,)})
    assert next(x for x in s.PREFLIGHT if x.name == "carp-heard").reads(t3) == []
    assert judge("carp-heard", t=t3).status == "ok"
