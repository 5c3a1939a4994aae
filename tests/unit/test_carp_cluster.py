"""The service IP and the cluster as data: alias numbering, skews, the diagnosis, timing, the probe's outage."""

import pytest

from wizard.carp import cluster as c
from wizard.carp import service_ip as s
from wizard.carp.steps import Change, Target, Vip

V = Vip("em0", 7, ("192.0.2.100/32",), key="7")
T = Target("server-1", "192.0.2.11", "192.0.2.0/24", "192.0.2.1", "em0", "T", advskew=0, vips=(V,), vip=V)
V6 = Vip("em0", 11, ("2001:db8::100/64",), key="11")
T6 = T.for_vip(V6)
UNI = Vip("em0", 12, ("192.0.2.101/32", "2001:db8::101/64"), peer="192.0.2.12", peer6="2001:db8::12", key="12")


def test_alias_slot_reuses_the_vhid_line_else_next_consecutive():
    rc = ('ifconfig_em0_alias0="inet 192.0.2.200/32"\n'
          'ifconfig_em0_alias1="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32"\n')
    assert s.alias_slot(rc, T) == (1, "inet vhid 7 advskew 0 pass x alias 192.0.2.100/32")
    assert s.alias_slot('ifconfig_em0_alias0="inet 192.0.2.200/32"\n', T) == (1, None)
    assert s.alias_slot("", T) == (0, None)


def test_rc_line_matches_the_handbook_form_and_every_literal_is_quoted():
    assert s.alias_value(T, "192.0.2.100/32", "SECRET") == "inet vhid 7 advskew 0 pass SECRET alias 192.0.2.100/32"
    assert s.alias_assignment(T, "192.0.2.100/32", 0) == \
        "ifconfig_em0_alias0='inet vhid 7 advskew 0 pass '\"$CARP_PASS\"' alias 192.0.2.100/32'"
    assert s.set_vhid_command(T, "192.0.2.100/32") == \
        "ifconfig em0 inet vhid 7 advskew 0 advbase 1 pass \"$CARP_PASS\" alias 192.0.2.100/32"


def test_inet6_line_is_network_subrs_form():
    # libexec/rc/network.subr (ifalias_af_common_handler) runs `ifconfig IF <the line> alias` for a line that
    # starts with inet6, so the address comes first with its prefixlen.
    assert s.alias_value(T6, "2001:db8::100/64", "SECRET") == \
        "inet6 2001:db8::100 prefixlen 64 vhid 11 advskew 0 pass SECRET"
    assert s.set_vhid_command(T6, "2001:db8::100/64") == \
        "ifconfig em0 inet6 2001:db8::100/64 vhid 11 advskew 0 advbase 1 pass \"$CARP_PASS\" alias"
    assert s.line_address("inet6 2001:db8::100 prefixlen 64 vhid 11 advskew 0 pass x") == "2001:db8::100"


def test_unicast_writes_peer_and_peer6_and_mcast_only_to_switch_back():
    t = T.for_vip(UNI)
    assert s.alias_value(t, "192.0.2.101/32", "P") == \
        "inet vhid 12 advskew 0 pass P peer 192.0.2.12 alias 192.0.2.101/32"
    assert s.alias_value(t, "2001:db8::101/64", "P").endswith("pass P peer6 2001:db8::12")
    assert s.set_vhid_command(t).endswith('pass "$CARP_PASS" peer 192.0.2.12 peer6 2001:db8::12')
    assert "mcast" not in s.set_vhid_command(T)  # 13.x knows no mcast: only sent to switch back on 14.x
    assert s.set_vhid_command(T6, announce=True).endswith('"$CARP_PASS" mcast mcast6')


def test_remove_drops_every_line_of_the_vhid_and_renumbers_the_rest():
    rc = ('ifconfig_em0_alias0="inet vhid 12 advskew 0 pass a alias 192.0.2.101/32"\n'
          'ifconfig_em0_alias1="inet vhid 9 advskew 0 pass b alias 192.0.2.150/32"\n'
          'ifconfig_em0_alias2="inet6 2001:db8::101 prefixlen 64 vhid 12 advskew 0 pass a"\n'
          'ifconfig_em0_alias3="inet vhid 10 advskew 0 pass c alias 192.0.2.160/32"\n')
    change = s._judge_remove_persist(T.for_vip(UNI), [rc], [])
    assert isinstance(change, Change)
    moves = [c for c in change.commands if "sysrc -n" in c or "sysrc -x" in c]
    assert moves == ["v=$(sysrc -n ifconfig_em0_alias1) && sysrc ifconfig_em0_alias0=\"$v\" >/dev/null",
                     "v=$(sysrc -n ifconfig_em0_alias3) && sysrc ifconfig_em0_alias1=\"$v\" >/dev/null",
                     "sysrc -x ifconfig_em0_alias2", "sysrc -x ifconfig_em0_alias3"]
    assert not any(" b " in c or "pass c" in c for c in change.commands)  # others' passwords never travel


def test_configure_adds_missing_addresses_and_drops_stale_ones():
    from wizard.carp.facts import parse_ifconfig

    text = ("em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
            "\tinet 192.0.2.11 netmask 0xffffff00 broadcast 192.0.2.255\n"
            "\tinet 192.0.2.99 netmask 0xffffffff broadcast 192.0.2.99 vhid 12\n"
            "\tcarp: MASTER vhid 12 advbase 1 advskew 0\n\t      peer 224.0.0.18 peer6 ff02::12\n")
    change = s._judge_vip_now(T.for_vip(UNI), [parse_ifconfig(text), True, True], [])
    assert isinstance(change, Change)
    joined = "\n".join(change.commands)
    assert "inet 192.0.2.99 -alias" in joined and "alias 192.0.2.101/32" in joined
    assert "inet6 2001:db8::101/64" in joined and "peer 192.0.2.12" in joined


def test_backup_skews_follow_the_admins_order():
    assert s.backup_skews(1) == [100]
    assert s.backup_skews(2) == [100, 200]
    many = s.backup_skews(5)
    assert many == sorted(set(many)) and many[-1] <= 254


def _node(name, state, demotion=0, preempt=1, rc="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32", skew=0,
          maintenance=False, states=None):
    vips = {"7": c.VipFacts(state, skew, True, rc)}
    for key, st in (states or {}).items():
        vips[key] = c.VipFacts(st, skew, True, rc)
    return c.NodeFacts(name, vips, demotion, preempt, maintenance)


ONE = (V,)


def test_diagnose_healthy_and_split_brain():
    ok = c.diagnose([_node("a", "MASTER"), _node("b", "BACKUP")], ONE, {"7": True})
    assert ok.healthy and ok.master == "a"
    split = c.diagnose([_node("a", "MASTER"), _node("b", "MASTER")], ONE, {"7": True})
    assert not split.healthy and "Split brain" in split.problems[0] and "password" in split.problems[0]


def test_diagnose_per_service_ip_and_a_split_across_vhids():
    two = (V, V6)
    same = c.diagnose([_node("a", "MASTER", states={"11": "MASTER"}), _node("b", "BACKUP", states={"11": "BACKUP"})],
                      two, {"7": True, "11": True})
    assert same.healthy and same.master == "a" and same.masters == {"7": "a", "11": "a"}
    apart = c.diagnose([_node("a", "MASTER", states={"11": "BACKUP"}), _node("b", "BACKUP", states={"11": "MASTER"})],
                       two, {"7": True, "11": True})
    assert not apart.healthy and apart.master is None
    assert any("split the service IPs: a of vhid 7; b of vhid 11" in p for p in apart.problems)
    brain = c.diagnose([_node("a", "MASTER", states={"11": "MASTER"}), _node("b", "BACKUP", states={"11": "MASTER"})],
                       two, {"7": True, "11": True})
    assert [p for p in brain.problems if "Split brain" in p] == [
        p for p in brain.problems if "vhid 11 on em0 (2001:db8::100)" in p]
    node_wide = c.diagnose([_node("a", "MASTER", preempt=0, states={"11": "MASTER"}),
                            _node("b", "BACKUP", states={"11": "BACKUP"})], two, {"7": True, "11": True})
    assert sum("preempt=0" in p for p in node_wide.problems) == 1  # said once per node, not per vhid


def test_diagnose_names_each_pitfall():
    texts = " ".join(c.diagnose([_node("a", "INIT"), _node("b", "BACKUP", demotion=240, preempt=0)], ONE,
                                {"7": False}).problems)
    assert "INIT" in texts and "demotion=240 left raised" in texts and "preempt=0" in texts
    rogue = c.diagnose([_node("a", "BACKUP"), _node("b", "BACKUP")], ONE, {"7": True})
    assert "another device on the segment holds vhid 7" in rogue.problems[0]
    drift = c.diagnose([_node("a", "MASTER", rc=None), _node("b", "BACKUP", skew=100)], ONE, {"7": True})
    assert any("not in /etc/rc.conf" in p for p in drift.problems)
    assert any("disagree" in p for p in drift.problems)
    gone = c.diagnose([_node("a", "MASTER"), c.NodeFacts.unreachable("b", "no route")], ONE, {"7": True})
    assert gone.problems == ["b is unreachable (no route)."]


def test_maintenance_demotion_is_not_a_problem_but_every_node_in_maintenance_is():
    assert c.diagnose([_node("a", "BACKUP", demotion=240, maintenance=True), _node("b", "MASTER")], ONE,
                      {"7": True}).healthy
    both = c.diagnose([_node("a", "BACKUP", 240, maintenance=True), _node("b", "MASTER", 240, maintenance=True)],
                      ONE, {"7": True})
    assert "Every node is in maintenance" in both.problems[-1]


def test_check_settles_where_preempt_puts_the_vip():
    healthy_on_b = c.Diagnosis(True, "b")
    assert c.settled(healthy_on_b, "b", True, set()) and not c.settled(healthy_on_b, "a", True, set())
    assert c.settled(healthy_on_b, None, True, {"a"})  # the preferred master is in maintenance
    assert not c.settled(c.Diagnosis(True, "a"), None, True, {"a"})
    assert c.settled(healthy_on_b, "a", False, set())  # nothing changed: any healthy master will do


def test_demotion_is_written_as_a_difference():
    assert c.set_demotion_command(0, 240) == "sysctl net.inet.carp.demotion=240"
    assert c.set_demotion_command(240, 0) == "sysctl net.inet.carp.demotion=-240"
    assert c.set_demotion_command(240, 240) is None


def test_carp_timing_bound_and_the_waits_built_on_it():
    assert c.master_down_bound(1, 100) == pytest.approx(3.390625)
    assert c.transition_deadline(2) == pytest.approx(6 + 255 / 256 + c.TRANSITION_MARGIN)


def test_probe_command_quotes_the_vip_and_prober_is_never_the_master():
    assert c.probe_command("192.0.2.100; id", c.probe_count(1)) == "ping -c 90 -i 0.1 -W 200 '192.0.2.100; id'"
    assert c.probe_command("2001:db8::100", c.probe_count(1)) == "ping6 -c 90 -i 0.1 2001:db8::100"
    nodes = [_node("a", "MASTER"), _node("b", "BACKUP")]
    assert c.pick_prober([], nodes, {"a", "b"}) == "b"
    assert c.pick_prober(["client"], nodes, {"a", "b", "client"}) == "client"


def test_outage_from_ping_is_the_longest_run_of_missing_replies():
    lines = [f"64 bytes from 192.0.2.100: icmp_seq={i} ttl=64 time=0.1 ms" for i in range(50) if not 10 <= i < 37]
    text = "\n".join(lines) + "\n50 packets transmitted, 23 packets received, 54.0% packet loss\n"
    outage, sent, received = c.outage_from_ping(text, 0.1)
    assert round(outage, 2) == 2.7 and (sent, received) == (50, 23)
    assert c.is_reply(lines[0]) and not c.is_reply("PING 192.0.2.100 (192.0.2.100): 56 data bytes")
    assert c.ping_counts(text) == (50, 23)
    # A ping cut off before its statistics: the counts are not known, the replies seen still give the gaps.
    cut = "\n".join(lines[:12])
    assert c.ping_counts(cut) is None
    outage, sent, received = c.outage_from_ping(cut, 0.1)
    assert round(outage, 2) == 2.7 and (sent, received) == (39, 12)


def test_a_drill_outage_is_told_only_when_the_pings_cover_the_takeover():
    def ping(replies, sent=90):
        return "".join(f"64 bytes from 192.0.2.100: icmp_seq={i} ttl=64 time=0.1 ms\n" for i in replies) + (
            f"{sent} packets transmitted, {len(replies)} packets received\n")

    whole = ping([i for i in range(90) if not 10 <= i < 37])
    outage, why = c.drill_outage(whole, 0.1, stop_seq=9, needed=3.39)
    assert round(outage or 0, 2) == 2.7 and why == ""
    # The stop landed late, at seq 85: the pings ended 0.4 s after it, so the 0.3 s gap seen is no outage figure.
    late = ping([i for i in range(90) if not 86 <= i < 89])
    assert c.drill_outage(late, 0.1, stop_seq=85, needed=3.39) == (None, (
        "the prober's pings ended 0.4 s after CARP was stopped, short of the 3.39 s a takeover may take: the outage "
        "was not measured"))
    assert c.drill_outage(ping([]), 0.1, stop_seq=None, needed=3.39)[0] is None
    assert c.drill_outage("", 0.1, stop_seq=3, needed=3.39) == (None, "the prober's ping printed nothing")
    assert c.probe_count(1) == 90 and c.probe_count(5) == 210  # 3 x advbase + 255/256 + 5 s, every 100 ms
