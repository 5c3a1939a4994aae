"""Pure unit tests of the service-IP layer: alias numbering, skews, diagnosis, outage from a ping transcript."""

from wizard.carp import service_ip as s

T = s.CarpTarget("server-1", "192.0.2.11", "192.0.2.0/24", "192.0.2.1", "192.0.2.100", 7, "em0", "T", advskew=0)


def test_alias_slot_reuses_the_vhid_line_else_next_consecutive():
    rc = ('ifconfig_em0_alias0="inet 192.0.2.200/32"\n'
          'ifconfig_em0_alias1="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32"\n')
    assert s.alias_slot(rc, T) == (1, "inet vhid 7 advskew 0 pass x alias 192.0.2.100/32")
    assert s.alias_slot('ifconfig_em0_alias0="inet 192.0.2.200/32"\n', T) == (1, None)
    assert s.alias_slot("", T) == (0, None)


def test_rc_line_matches_the_handbook_form():
    assert s.alias_value(T, "SECRET") == "inet vhid 7 advskew 0 pass SECRET alias 192.0.2.100/32"


def test_backup_skews_follow_the_admins_order():
    assert s.backup_skews(1) == [100]
    assert s.backup_skews(2) == [100, 200]
    many = s.backup_skews(5)
    assert many == sorted(set(many)) and many[-1] <= 254


def _node(name, state, demotion=0, preempt=1, rc="inet vhid 7 advskew 0 pass x alias 192.0.2.100/32", skew=0):
    return s.NodeFacts(name, state, skew, True, demotion, preempt, rc)


def test_diagnose_healthy_and_split_brain():
    ok = s.diagnose([_node("a", "MASTER"), _node("b", "BACKUP")], 7, True)
    assert ok.healthy and ok.master == "a"
    split = s.diagnose([_node("a", "MASTER"), _node("b", "MASTER")], 7, True)
    assert not split.healthy and "Split brain" in split.problems[0] and "password" in split.problems[0]


def test_diagnose_names_each_pitfall():
    texts = " ".join(s.diagnose([_node("a", "INIT"), _node("b", "BACKUP", demotion=240, preempt=0)], 7,
                                False).problems)
    assert "INIT" in texts and "demotion=240 left raised" in texts and "preempt=0" in texts
    rogue = s.diagnose([_node("a", "BACKUP"), _node("b", "BACKUP")], 7, True)
    assert "another device on the segment holds vhid 7" in rogue.problems[0]
    drift = s.diagnose([_node("a", "MASTER", rc=None), _node("b", "BACKUP", skew=100)], 7, True)
    assert any("not in /etc/rc.conf" in p for p in drift.problems)
    assert any("disagree" in p for p in drift.problems)


def test_outage_from_ping_is_the_longest_run_of_missing_replies():
    lines = [f"64 bytes from 192.0.2.100: icmp_seq={i} ttl=64 time=0.1 ms" for i in range(50) if not 10 <= i < 37]
    text = "\n".join(lines) + "\n50 packets transmitted, 23 packets received, 54.0% packet loss\n"
    outage, sent, received = s.outage_from_ping(text, 0.1)
    assert round(outage, 2) == 2.7 and (sent, received) == (50, 23)
