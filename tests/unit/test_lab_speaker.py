"""The lab's carp(4) speaker as data: the header, its checksum, the HMAC as ip_carp.c computes it (built here
independently with hashlib, step by step like carp_hmac_prepare/carp_hmac_generate), the key as ifconfig keeps it,
and the election rules of carp_input_c, driven through a speaker with its I/O replaced."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from lab.freebsd import speaker as sp


def _ip_carp_hmac(password: str, vhid: int, v4: list[str], v6: list[str], counter: bytes) -> bytes:
    """carp_hmac_prepare + carp_hmac_generate, written out: pads of the 64-byte key, SHA1 twice."""
    import ipaddress

    key = password.encode()[:19].ljust(20, b"\0")  # strlcpy(carpr_key, val, CARP_KEY_LEN)
    pad = key.ljust(64, b"\0")
    inner = hashlib.sha1(bytes(b ^ 0x36 for b in pad))
    inner.update(bytes([2, 1, vhid]))
    for a in sorted(v4, key=lambda a: int(ipaddress.IPv4Address(a))):
        inner.update(ipaddress.IPv4Address(a).packed)
    for a in sorted(v6, key=lambda a: ipaddress.IPv6Address(a).packed):
        inner.update(ipaddress.IPv6Address(a).packed)
    inner.update(counter)
    outer = hashlib.sha1(bytes(b ^ 0x5C for b in pad))
    outer.update(inner.digest())
    return outer.digest()


def test_the_advertisement_is_ip_carps_header_with_its_hmac_and_checksum():
    addresses = ["192.0.2.101/32", "2001:db8::100/64", "192.0.2.100/32"]
    packet = sp.encode(7, 1, 100, 0x0102030405060708, sp.key_of("s3cret"), addresses)
    assert len(packet) == 36 and sp.checksum(packet) == 0
    vt, vhid, advskew, authlen, pad, advbase, _ck, counter, md = struct.unpack("!BBBBBBH8s20s", packet)
    assert (vt, vhid, advskew, authlen, pad, advbase) == (0x21, 7, 100, 7, 0, 1)
    assert counter == bytes(range(1, 9))
    assert md == _ip_carp_hmac("s3cret", 7, ["192.0.2.100", "192.0.2.101"], ["2001:db8::100"], counter)
    ad = sp.decode(packet)
    assert ad is not None and (ad.vhid, ad.advbase, ad.advskew) == (7, 1, 100)
    assert sp.decode(packet[:20]) is None and sp.decode(packet[:8] + b"x" + packet[9:]) is None


def test_the_key_is_the_first_19_bytes_as_ifconfig_copies_it():
    assert sp.key_of("a" * 25) == b"a" * 19 + b"\0"
    assert sp.key_of("short") == b"short" + b"\0" * 15


class Quiet(sp.Speaker):
    """The speaker's rules without sockets, addresses or the emulated kernel."""

    def __init__(self, preempt: bool = True, demotion: int = 0) -> None:
        self.vhids, self.demotion, self.preempt, self.iface, self.address = {}, demotion, preempt, "em0", "x"
        self.log: list[tuple[str, str]] = []
        self.sent: list[int] = []

    def _set_state(self, sc: sp.Vhid, new: str, reason: str) -> None:
        sc.state = new
        self.log.append((new, reason))

    def _hold_addresses(self, sc: sp.Vhid, hold: bool) -> None:
        pass

    def _announce(self, sc: sp.Vhid) -> None:
        pass

    def send_ad(self, sc: sp.Vhid, now: float) -> None:
        self.sent.append(self.skew(sc))
        sc.next_ad = now + sp.interval_us(sc.advbase, self.skew(sc)) / 1e6


def _vhid(state: str, advskew: int, key: bytes = sp.key_of("pw")) -> sp.Vhid:
    return sp.Vhid(1, advbase=1, advskew=advskew, key=key, addresses=["192.0.2.100/32"], state=state)


def _ad(advskew: int, key: bytes = sp.key_of("pw"), advbase: int = 1) -> bytes:
    return sp.encode(1, advbase, advskew, 5, key, ["192.0.2.100/32"])


def _feed(node: Quiet, packet: bytes, ttl: int = 255, dest: str = "224.0.0.18") -> list[Any]:
    node.input(packet, ttl, dest, now=100.0)
    return node.log


def test_a_master_steps_down_for_an_advertisement_as_frequent_as_its_own_or_more():
    node = Quiet()
    node.vhids[1] = _vhid("MASTER", 100)
    assert _feed(node, _ad(101)) == []  # slower: stays
    assert _feed(node, _ad(100)) == [("BACKUP", "more frequent advertisement received")]


def test_a_preempting_backup_takes_over_from_a_slower_master_at_once_and_demotion_counts():
    node = Quiet(preempt=True)
    node.vhids[1] = _vhid("BACKUP", 0)
    assert _feed(node, _ad(0)) == []  # as fast: wait
    assert _feed(node, _ad(240)) == [("MASTER", "preempting a slower master")]
    demoted = Quiet(preempt=True, demotion=240)
    demoted.vhids[1] = _vhid("BACKUP", 0)
    assert _feed(demoted, _ad(100)) == []  # its own skew is 240 now: the master is faster
    assert Quiet(preempt=False).skew(_vhid("BACKUP", 100)) == 100 and demoted.skew(_vhid("BACKUP", 100)) == 240


def test_without_preempt_a_backup_waits_and_a_master_slower_than_its_timer_counts_as_down():
    node = Quiet(preempt=False)
    node.vhids[1] = _vhid("BACKUP", 0)
    assert _feed(node, _ad(240)) == []
    assert _feed(node, _ad(0, advbase=4)) == [("MASTER", "master will time out")]


def test_a_wrong_key_a_bad_ttl_or_another_vhid_is_ignored():
    node = Quiet()
    node.vhids[1] = _vhid("MASTER", 100)
    assert _feed(node, _ad(0, key=sp.key_of("other"))) == []  # incorrect hash: a split brain, as on FreeBSD
    assert _feed(node, _ad(0), ttl=64) == []
    assert _feed(node, sp.encode(2, 1, 0, 5, sp.key_of("pw"), ["192.0.2.100/32"])) == []
    assert _feed(node, _ad(0), ttl=64, dest="192.0.2.11") == [("BACKUP", "more frequent advertisement received")]


def test_timers_follow_ip_carp():
    node = Quiet()
    backup = _vhid("BACKUP", 100)
    node.vhids[1] = backup
    node._backup_timer(backup, 0.0)
    assert abs(backup.master_down - (3 + 100 / 256)) < 1e-6  # 3 x advbase + advskew/256
    node.tick(backup.master_down)
    assert node.log == [("MASTER", "master timed out")] and node.sent == [100]
    assert abs(backup.next_ad - (backup.master_down + 1 + 100 / 256)) < 1e-6
