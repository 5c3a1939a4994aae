"""The service IP and the cluster as data: alias numbering, skews, the diagnosis, timing, the probe's outage."""

import pytest

from wizard.carp import cluster as c
from wizard.carp import service_ip as s
from wizard.carp.steps import Target

T = Target("server-1", "192.0.2.11", "192.0.2.0/24", "192.0.2.1", "192.0.2.100", 7, "em0", "T", advskew=0)


def test_alias_slot_reuses_the_vhid_line_else_next_consecutive():
    rc = ('ifconfig_em0_alias0="inet 192.0.2.200/32"\n'
          'ifconfig_em0_alias1="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32"\n')
    assert s.alias_slot(rc, T) == (1, "inet vhid 7 advskew 0 pass x alias 192.0.2.100/32")
    assert s.alias_slot('ifconfig_em0_alias0="inet 192.0.2.200/32"\n', T) == (1, None)
    assert s.alias_slot("", T) == (0, None)


def test_rc_line_matches_the_handbook_form_and_every_literal_is_quoted():
    assert s.alias_value(T, "SECRET") == "inet vhid 7 advskew 0 pass SECRET alias 192.0.2.100/32"
    assert s.alias_assignment(T, 0) == \
        "ifconfig_em0_alias0='inet vhid 7 advskew 0 pass '\"$CARP_PASS\"' alias 192.0.2.100/32'"
    assert s.set_vhid_command(T, add=True) == \
        "ifconfig em0 inet vhid 7 advskew 0 advbase 1 pass \"$CARP_PASS\" alias 192.0.2.100/32"


def test_backup_skews_follow_the_admins_order():
    assert s.backup_skews(1) == [100]
    assert s.backup_skews(2) == [100, 200]
    many = s.backup_skews(5)
    assert many == sorted(set(many)) and many[-1] <= 254


def _node(name, state, demotion=0, preempt=1, rc="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32", skew=0,
          maintenance=False):
    return c.NodeFacts(name, state, skew, True, demotion, preempt, rc, maintenance)


def test_diagnose_healthy_and_split_brain():
    ok = c.diagnose([_node("a", "MASTER"), _node("b", "BACKUP")], 7, True)
    assert ok.healthy and ok.master == "a"
    split = c.diagnose([_node("a", "MASTER"), _node("b", "MASTER")], 7, True)
    assert not split.healthy and "Split brain" in split.problems[0] and "password" in split.problems[0]


def test_diagnose_names_each_pitfall():
    texts = " ".join(c.diagnose([_node("a", "INIT"), _node("b", "BACKUP", demotion=240, preempt=0)], 7,
                                False).problems)
    assert "INIT" in texts and "demotion=240 left raised" in texts and "preempt=0" in texts
    rogue = c.diagnose([_node("a", "BACKUP"), _node("b", "BACKUP")], 7, True)
    assert "another device on the segment holds vhid 7" in rogue.problems[0]
    drift = c.diagnose([_node("a", "MASTER", rc=None), _node("b", "BACKUP", skew=100)], 7, True)
    assert any("not in /etc/rc.conf" in p for p in drift.problems)
    assert any("disagree" in p for p in drift.problems)
    gone = c.diagnose([_node("a", "MASTER"), c.NodeFacts.unreachable("b", "no route")], 7, True)
    assert gone.problems == ["b is unreachable (no route)."]


def test_maintenance_demotion_is_not_a_problem_but_every_node_in_maintenance_is():
    assert c.diagnose([_node("a", "BACKUP", demotion=240, maintenance=True), _node("b", "MASTER")], 7, True).healthy
    both = c.diagnose([_node("a", "BACKUP", 240, maintenance=True), _node("b", "MASTER", 240, maintenance=True)],
                      7, True)
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
    assert c.probe_command("192.0.2.100; id") == "ping -c 90 -i 0.1 -W 200 '192.0.2.100; id'"
    nodes = [_node("a", "MASTER"), _node("b", "BACKUP")]
    assert c.pick_prober([], nodes, {"a", "b"}) == "b"
    assert c.pick_prober(["client"], nodes, {"a", "b", "client"}) == "client"


def test_outage_from_ping_is_the_longest_run_of_missing_replies():
    lines = [f"64 bytes from 192.0.2.100: icmp_seq={i} ttl=64 time=0.1 ms" for i in range(50) if not 10 <= i < 37]
    text = "\n".join(lines) + "\n50 packets transmitted, 23 packets received, 54.0% packet loss\n"
    outage, sent, received = c.outage_from_ping(text, 0.1)
    assert round(outage, 2) == 2.7 and (sent, received) == (50, 23)
    assert c.is_reply(lines[0]) and not c.is_reply("PING 192.0.2.100 (192.0.2.100): 56 data bytes")
