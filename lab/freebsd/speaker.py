"""The lab's own carp(4) speaker: one daemon per host, all of its vhids, written after FreeBSD's ip_carp.c.

- Wire: CARP version 2 advertisements (IP protocol 112, TTL/hop limit 255) to 224.0.0.18 / ff02::12, or to a
  unicast `peer`/`peer6`; the 36-byte header with its internet checksum, a 64-bit counter and the SHA1-HMAC that
  carp_hmac_prepare/carp_hmac_generate compute: HMAC-SHA1 keyed with the 20-byte key (the password, at most 19
  bytes: ifconfig copies it with strlcpy into CARP_KEY_LEN), over version, type, vhid, the vhid's IPv4 addresses
  in ascending order, its IPv6 addresses in ascending order, then the counter.
- Timers: a MASTER advertises every advbase + skew/256 s, where skew is DEMOTE_ADVSKEW (advskew plus
  net.inet.carp.demotion, capped at 240); a BACKUP's master-down timer is 3 x advbase + advskew/256 (carp_setrun).
- Input (carp_input_c): a MASTER that hears an advertisement at least as frequent as its own steps down ("more
  frequent advertisement received"); a BACKUP with preempt takes over at once from a slower master ("preempting a
  slower master"), and from one slower than its own master-down interval ("master will time out"); otherwise it
  restarts its master-down timer. A new MASTER advertises at once, then sends a gratuitous ARP for each IPv4
  address and an unsolicited neighbour advertisement for each IPv6 one; only the MASTER holds the addresses, so
  only it answers ARP and ND.
- Parameters (advskew, advbase, demotion, addresses, key) are read again on SIGHUP, which the emulated kernel
  sends after each change: they take effect at the next advertisement, nothing restarts.

Its state changes go through the emulated kernel's `transition` (the `carp:` line, devd). Stdlib only; it runs
inside the host's network and mount namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

IPPROTO_CARP = 112
CARP_VERSION, CARP_ADVERTISEMENT = 2, 1
CARP_DFLTTL = 255
CARP_MAXSKEW = 240
CARP_KEY_LEN = 20
CARP_AUTHLEN = 7
GROUP4, GROUP6 = "224.0.0.18", "ff02::12"
HEADER = struct.Struct("!BBBBBBH8s20s")  # version/type, vhid, advskew, authlen, pad, advbase, cksum, counter, md
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)


# -- the protocol, pure --------------------------------------------------------------------------------------
def key_of(password: str) -> bytes:
    """The kernel's sc_key: ifconfig's strlcpy into CARP_KEY_LEN bytes keeps at most 19, NUL-padded to 20."""
    return password.encode()[:CARP_KEY_LEN - 1].ljust(CARP_KEY_LEN, b"\0")


def hmac_message(vhid: int, addresses: list[str]) -> bytes:
    """What carp_hmac_prepare feeds SHA1 after the key pad: version, type, vhid, sorted IPv4, sorted IPv6."""
    packed = [ipaddress.ip_address(a.split("/")[0]).packed for a in addresses]
    v4 = sorted({p for p in packed if len(p) == 4})  # ntohl order is the packed bytes' order
    v6 = sorted({p for p in packed if len(p) == 16})  # memcmp order
    return bytes([CARP_VERSION, CARP_ADVERTISEMENT, vhid & 0xFF]) + b"".join([*v4, *v6])


def digest(key: bytes, vhid: int, addresses: list[str], counter: bytes) -> bytes:
    return hmac.new(key, hmac_message(vhid, addresses) + counter, hashlib.sha1).digest()


def checksum(data: bytes) -> int:
    """The internet checksum (in_cksum) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def encode(vhid: int, advbase: int, advskew: int, counter: int, key: bytes, addresses: list[str]) -> bytes:
    packed_counter = struct.pack("!Q", counter)
    md = digest(key, vhid, addresses, packed_counter)
    header = HEADER.pack((CARP_VERSION << 4) | CARP_ADVERTISEMENT, vhid, advskew, CARP_AUTHLEN, 0, advbase, 0,
                         packed_counter, md)
    return header[:6] + struct.pack("!H", checksum(header)) + header[8:]


@dataclass(frozen=True)
class Advert:
    vhid: int
    advbase: int
    advskew: int
    counter: bytes
    md: bytes


def decode(payload: bytes) -> Advert | None:
    """A CARP advertisement from the bytes after the IP header, or None (short, bad checksum, version, type)."""
    if len(payload) < HEADER.size or checksum(payload[:HEADER.size]) != 0:
        return None
    vt, vhid, advskew, _authlen, _pad, advbase, _ck, counter, md = HEADER.unpack(payload[:HEADER.size])
    if vt >> 4 != CARP_VERSION or vt & 0xF != CARP_ADVERTISEMENT:
        return None
    return Advert(vhid, advbase, advskew, counter, md)


def interval_us(advbase: int, skew: int) -> int:
    """advbase + skew/256 seconds, in microseconds, as the kernel's timevals compare them."""
    return advbase * 1_000_000 + skew * 1_000_000 // 256


# -- one vhid ------------------------------------------------------------------------------------------------
@dataclass
class Vhid:
    vhid: int
    advbase: int = 1
    advskew: int = 0
    key: bytes = b"\0" * CARP_KEY_LEN
    addresses: list[str] = field(default_factory=list)
    peer: str = GROUP4
    peer6: str = GROUP6
    state: str = "INIT"
    counter: int = 0
    next_ad: float = 0.0  # when a MASTER sends its next advertisement
    master_down: float = 0.0  # when a BACKUP takes over, unless it hears the master first
    force_seq: int = 0

    def v4(self) -> list[str]:
        return [a for a in self.addresses if ":" not in a]

    def v6(self) -> list[str]:
        return [a for a in self.addresses if ":" in a]


class Speaker:
    def __init__(self, host: Any, carp: Any) -> None:
        self.host, self.carp = host, carp
        self.iface = host.cfg["iface"]
        self.address = host.cfg["address"]
        self.vhids: dict[int, Vhid] = {}
        self.demotion = 0
        self.preempt = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.sock4 = self._socket4()
        self.sock6 = self._socket6()

    # sockets --------------------------------------------------------------------------------------------
    def _socket4(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_CARP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.iface.encode())
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, CARP_DFLTTL)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, CARP_DFLTTL)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)  # IPTOS_LOWDELAY, as carp_send_ad_locked
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.address))
        mreq = socket.inet_aton(GROUP4) + socket.inet_aton(self.address)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        s.setblocking(False)
        return s

    def _socket6(self) -> socket.socket | None:
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_CARP)
            index = socket.if_nametoindex(self.iface)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.iface.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, CARP_DFLTTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, CARP_DFLTTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            mreq = socket.inet_pton(socket.AF_INET6, GROUP6) + struct.pack("@I", index)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            s.setblocking(False)
            return s
        except OSError:  # no IPv6 on this host: IPv6 vhids cannot speak
            return None

    # configuration --------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the emulated kernel's CARP state (under its lock, so a change is read whole)."""
        with self.host.locked() as state:
            wanted = {} if not state["carp_loaded"] or not state["sysctl"]["allow"] else {
                int(v): e for v, e in state["vhids"].items() if e.get("active") and e.get("addrs")}
            self.demotion = int(state["sysctl"]["demotion"])
            self.preempt = bool(state["sysctl"]["preempt"])
        now = time.monotonic()
        for vhid in [v for v in self.vhids if v not in wanted]:
            self._leave(self.vhids.pop(vhid))
        for vhid, entry in wanted.items():
            sc = self.vhids.get(vhid)
            if sc is None:
                sc = self.vhids[vhid] = Vhid(vhid)
            sc.advbase, sc.advskew = int(entry["advbase"]), int(entry["advskew"])
            sc.key = key_of(entry.get("pass") or "")
            sc.addresses = list(entry["addrs"])
            sc.peer, sc.peer6 = entry.get("peer") or GROUP4, entry.get("peer6") or GROUP6
            if sc.state == "INIT":  # carp_setrun: INIT -> BACKUP, then wait for a master
                self._set_state(sc, "BACKUP", "initialization complete")
                self._backup_timer(sc, now)
            force = entry.get("force")
            if force and int(entry.get("force_seq", 0)) != sc.force_seq:
                sc.force_seq = int(entry.get("force_seq", 0))
                if force == "backup" and sc.state == "MASTER":
                    self._become_backup(sc, "user requested via ifconfig", now)
                elif force == "master" and sc.state == "BACKUP":
                    self._become_master(sc, "user requested via ifconfig", now)
            if sc.state == "MASTER":
                self._hold_addresses(sc, True)

    def _leave(self, sc: Vhid) -> None:
        """A vhid the kernel no longer runs (removed, link down, carp off): its addresses go; the kernel already
        logged its INIT."""
        self._hold_addresses(sc, False)
        sc.state = "INIT"

    # timers and states ----------------------------------------------------------------------------------
    def skew(self, sc: Vhid) -> int:
        return max(0, min(sc.advskew + self.demotion, CARP_MAXSKEW))  # DEMOTE_ADVSKEW

    def _backup_timer(self, sc: Vhid, now: float) -> None:
        sc.master_down = now + interval_us(3 * sc.advbase, sc.advskew) / 1e6

    def _set_state(self, sc: Vhid, new: str, reason: str) -> None:
        sc.state = new
        self.carp.transition(self.host, str(sc.vhid), new, reason)

    def _become_master(self, sc: Vhid, reason: str, now: float) -> None:
        self._set_state(sc, "MASTER", reason)
        self._hold_addresses(sc, True)
        self.send_ad(sc, now)
        self._announce(sc)

    def _become_backup(self, sc: Vhid, reason: str, now: float) -> None:
        self._set_state(sc, "BACKUP", reason)
        self._hold_addresses(sc, False)
        self._backup_timer(sc, now)

    def tick(self, now: float) -> None:
        for sc in list(self.vhids.values()):
            if sc.state == "MASTER" and now >= sc.next_ad:
                self.send_ad(sc, now)
            elif sc.state == "BACKUP" and now >= sc.master_down:
                self._become_master(sc, "master timed out", now)

    def next_deadline(self) -> float | None:
        times = [sc.next_ad if sc.state == "MASTER" else sc.master_down
                 for sc in self.vhids.values() if sc.state in ("MASTER", "BACKUP")]
        return min(times) if times else None

    # output -----------------------------------------------------------------------------------------------
    def send_ad(self, sc: Vhid, now: float) -> None:
        sc.counter = (sc.counter + 1) & 0xFFFFFFFFFFFFFFFF if sc.counter else struct.unpack("!Q", os.urandom(8))[0]
        skew = self.skew(sc)
        packet = encode(sc.vhid, sc.advbase, skew, sc.counter, sc.key, sc.addresses)
        with contextlib.suppress(OSError):  # a link that is going down: the kernel counts a send error
            if sc.v4():
                self.sock4.sendto(packet, (sc.peer, 0))
            if sc.v6() and self.sock6 is not None:
                self.sock6.sendto(packet, (sc.peer6, 0, 0, socket.if_nametoindex(self.iface)))
        sc.next_ad = now + interval_us(sc.advbase, skew) / 1e6

    def _hold_addresses(self, sc: Vhid, hold: bool) -> None:
        """The MASTER holds the vhid's addresses (so only it answers ARP and ND); the others do not."""
        for address in sc.addresses:
            ip = ipaddress.ip_interface(address)
            if ip.version == 4:
                args = ["-4", "addr", "add" if hold else "del", "%s/32" % ip.ip, "dev", self.iface]
            else:
                args = ["-6", "addr", "add" if hold else "del", str(ip), "dev", self.iface] + (["nodad"] if hold
                                                                                                else [])
            subprocess.run(["ip", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def _announce(self, sc: Vhid) -> None:
        """carp_send_arp and carp_send_na: a gratuitous ARP per IPv4 address, an unsolicited NA per IPv6 one."""
        mac = _mac(self.iface)
        with contextlib.suppress(OSError), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
            raw.bind((self.iface, 0x0806))
            for address in sc.v4():
                ip = socket.inet_aton(address.split("/")[0])
                arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
                raw.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
        if not sc.v6():
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                                         socket.IPPROTO_ICMPV6) as icmp:
            icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            index = socket.if_nametoindex(self.iface)
            for address in sc.v6():
                target = ipaddress.ip_interface(address).ip.packed
                na = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, target, 2, 1, mac)  # Override flag
                icmp.sendto(na, ("ff02::1", 0, 0, index))

    # input ------------------------------------------------------------------------------------------------
    def receive(self, sock: socket.socket, now: float) -> None:
        while True:
            try:
                if sock.family == socket.AF_INET:
                    data, (source, _) = sock.recvfrom(2048)
                    ihl = (data[0] & 0x0F) * 4
                    ttl, dest = data[8], socket.inet_ntoa(data[16:20])
                    payload = data[ihl:]
                else:
                    payload, ancillary, _, addr = sock.recvmsg(2048, socket.CMSG_SPACE(4))
                    source, dest = addr[0].split("%")[0], GROUP6
                    ttl = next((struct.unpack("@i", d[:4])[0] for level, kind, d in ancillary
                                if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT), 0)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENETDOWN):
                    return
                raise
            if source == self.address or (source.startswith("fe80:") and self._own_link_local(source)):
                continue  # our own advertisement, looped back
            self.input(payload, ttl, dest, now)

    def _own_link_local(self, source: str) -> bool:
        with contextlib.suppress(OSError):
            with open("/proc/net/if_inet6") as f:
                own = {ipaddress.ip_address(bytes.fromhex(line.split()[0])) for line in f}
            return ipaddress.ip_address(source) in own
        return False

    def input(self, payload: bytes, ttl: int, dest: str, now: float) -> None:
        """carp_input / carp6_input then carp_input_c."""
        multicast = ipaddress.ip_address(dest).is_multicast
        if multicast and ttl != CARP_DFLTTL:  # carp(4): no TTL check when the peer is unicast
            return
        ad = decode(payload)
        if ad is None:
            return
        sc = self.vhids.get(ad.vhid)
        if sc is None or sc.state == "INIT":
            return
        if not hmac.compare_digest(ad.md, digest(sc.key, sc.vhid, sc.addresses, ad.counter)):
            return  # "incorrect hash": a wrong password or address list, so this node will not defer to it
        mine = interval_us(sc.advbase, self.skew(sc))
        theirs = interval_us(ad.advbase, ad.advskew)
        if sc.state == "MASTER":
            if mine >= theirs:
                self._become_backup(sc, "more frequent advertisement received", now)
        elif sc.state == "BACKUP":
            if self.preempt and mine < theirs:
                self._become_master(sc, "preempting a slower master", now)
            elif interval_us(3 * sc.advbase, 0) < theirs:
                self._become_master(sc, "master will time out", now)
            else:
                self._backup_timer(sc, now)

    # the loop ---------------------------------------------------------------------------------------------
    def wake(self, *args: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"x")

    def run(self) -> None:
        # carp(4) runs in the kernel's callouts, ahead of any process: a speaker starved by a busy machine (a CI run
        # on two cores) would miss its advertisements for seconds, and its backup would take over. A higher
        # priority than the machine's own work keeps its timing close to a kernel's.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        signal.signal(signal.SIGHUP, self.wake)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        self.reload()
        sockets = [self.sock4, *([self.sock6] if self.sock6 is not None else [])]
        try:
            while True:
                deadline = self.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                watched: list[Any] = [self.wake_r, *sockets]
                readable, _, _ = select.select(watched, [], [], timeout)
                now = time.monotonic()
                if self.wake_r in readable:
                    os.read(self.wake_r, 4096)
                    self.reload()
                for sock in sockets:
                    if sock in readable:
                        self.receive(sock, now)
                self.tick(time.monotonic())
        finally:
            for sc in self.vhids.values():
                self._hold_addresses(sc, False)


def _mac(iface: str) -> bytes:
    with open("/sys/class/net/%s/address" % iface) as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def main() -> None:
    from . import carp
    from .state import Host

    host = Host()
    with open(os.path.join(host.dir, "run", "speaker.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    Speaker(host, carp).run()


if __name__ == "__main__":
    main()
