"""ifconfig(8): interface listing (inet and inet6), the CARP (vhid) parameters with 14.x's peer/peer6, and `-k`;
backed by the host's CARP speaker on the lab segment (lab/freebsd/carp.py)."""

from __future__ import annotations

import ipaddress
import subprocess
import time
from typing import Any

from . import carp
from .state import Host, err, is_root, out

STATES = ("backup", "master")


def _mask_hex(prefix: int) -> str:
    return "0x%08x" % int(ipaddress.IPv4Network("0.0.0.0/%d" % prefix).netmask)


def _inet_line(addr: str, prefix: int, vhid: str | None = None) -> str:
    net = ipaddress.IPv4Interface("%s/%d" % (addr, prefix)).network
    line = "\tinet %s netmask %s broadcast %s" % (addr, _mask_hex(prefix), net.broadcast_address)
    return line + (" vhid %s" % vhid if vhid else "")


def _inet6_line(addr: str, prefix: int, vhid: str | None = None) -> str:
    return "\tinet6 %s prefixlen %d" % (addr, prefix) + (" vhid %s" % vhid if vhid else "")


def _link_local(iface: str) -> str | None:
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for row in rows:
        if row[-1] == iface and row[0].startswith("fe80"):
            return str(ipaddress.IPv6Address(bytes.fromhex(row[0])))
    return None


def _mac(host: Host) -> str:
    try:
        with open("/sys/class/net/%s/address" % host.cfg["iface"]) as f:
            return f.read().strip()
    except OSError:
        return "00:00:00:00:00:00"


def show(host: Host, name: str, keys: bool = False) -> None:
    if name == "lo0":
        out("lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384")
        out("\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>")
        out("\tinet 127.0.0.1 netmask 0xff000000")
        out("\tinet6 ::1 prefixlen 128")
        out("\tgroups: lo")
        out("\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>")
        return
    up = carp.link_up(host)
    state = host.read()
    if up:
        out("%s: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500" % name)
    else:
        out("%s: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500" % name)
    out("\toptions=4e524bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,LRO,WOL_MAGIC,"
        "VLAN_HWFILTER,VLAN_HWTSO,RXCSUM_IPV6,TXCSUM_IPV6,HWSTATS,MEXTPG>")
    out("\tether %s" % _mac(host))
    out(_inet_line(host.cfg["address"], host.cfg["prefix"]))
    for alias in state.get("aliases", []):
        addr, prefix = alias.split("/")
        out(_inet_line(addr, int(prefix)) if ":" not in addr else _inet6_line(addr, int(prefix)))
    link_local = _link_local(name)
    if link_local:
        out("\tinet6 %s%%%s prefixlen 64 scopeid 0x1" % (link_local, name))
    if host.cfg.get("address6"):
        out(_inet6_line(host.cfg["address6"], int(host.cfg.get("prefix6", 64))))
    vhids = sorted(state["vhids"], key=int)
    for vhid in vhids:
        for addr in state["vhids"][vhid]["addrs"]:
            a, prefix = addr.split("/")
            out(_inet_line(a, int(prefix), vhid) if ":" not in a else _inet6_line(a, int(prefix), vhid))
    for vhid in vhids:
        entry = state["vhids"][vhid]
        line = "\tcarp: %s vhid %s advbase %d advskew %d" % (carp.status(host, state, vhid), vhid,
                                                           entry["advbase"], entry["advskew"])
        # carp_status: `-k` adds the key, which the kernel hands only to root (SIOCGVH's priv_check).
        if keys and is_root() and entry.get("pass"):
            line += ' key "%s"' % entry["pass"]
        out(line)
        if host.major >= 14:
            out("\t      peer %s peer6 %s" % (entry.get("peer") or "224.0.0.18", entry.get("peer6") or "ff02::12"))
    out("\tmedia: Ethernet autoselect (1000baseT <full-duplex>)" if up else "\tmedia: Ethernet autoselect")
    out("\tstatus: %s" % ("active" if up else "no carrier"))
    disabled = state.get("ifdisabled", not host.cfg.get("address6"))
    out("\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>" if disabled else
        "\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>")


def _parse_addr(token: str, netmask: str | None, family: int = 4) -> str | None:
    if family == 6:
        try:
            ip6 = ipaddress.IPv6Interface(token if "/" in token else "%s/%s" % (token, netmask or "64"))
        except ValueError:
            return None
        return "%s/%d" % (ip6.ip, ip6.network.prefixlen)
    try:
        if "/" in token:
            iface = ipaddress.IPv4Interface(token)
        elif netmask:
            mask = int(netmask, 16) if netmask.startswith("0x") else int(ipaddress.IPv4Address(netmask))
            iface = ipaddress.IPv4Interface((token, bin(mask).count("1")))
        else:
            iface = ipaddress.IPv4Interface(token + "/32")
    except (ValueError, ipaddress.AddressValueError):
        return None
    return "%s/%d" % (iface.ip, iface.network.prefixlen)


def ifconfig(host: Host, argv: list[str]) -> int:
    names = [host.cfg["iface"], "lo0"]
    if argv == ["-l"]:
        out(" ".join(names))
        return 0
    keys = bool(argv) and argv[0] == "-k"
    if keys:
        argv = argv[1:]
    if not argv or argv == ["-a"]:
        for name in names:
            show(host, name, keys)
        return 0
    name, args = argv[0], argv[1:]
    if name.startswith("-"):
        err("usage: ifconfig [-j jail] [-f type:format] %s" % "interface address_family [address [dest_address]]")
        return 1
    if name not in names:
        err("ifconfig: interface %s does not exist" % name)
        return 1
    if not args:
        show(host, name, keys)
        return 0
    return configure(host, name, args)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _parse_request(args: list[str], major: int = 14) -> tuple[dict[str, Any], str | None]:
    """ifconfig's words after the interface -> the request, or an error message. `peer`, `peer6`, `mcast` and
    `mcast6` exist from FreeBSD 14.0 on; before, they are taken for an address, as ifconfig does."""
    req: dict[str, Any] = {"alias": True}
    unicast = major >= 14
    netmask = None
    i = 0
    while i < len(args):
        tok = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if tok in ("alias", "add", "-alias", "delete"):
            req["alias"] = tok in ("alias", "add")
        elif tok in ("up", "down"):
            req["link"] = tok
        elif unicast and tok in ("peer", "peer6"):
            if nxt is None:
                return req, "ifconfig: '%s' requires argument" % tok
            try:
                ip = ipaddress.ip_address(nxt)
            except ValueError:
                return req, ("ifconfig: Invalid IPv6 address %s" % nxt if tok == "peer6" else
                             "ifconfig: %s: bad value" % nxt)
            if (ip.version == 6) != (tok == "peer6"):
                return req, "ifconfig: %s: bad value" % nxt
            req[tok] = str(ip)
            i += 1
        elif unicast and tok in ("mcast", "mcast6"):
            req["peer" if tok == "mcast" else "peer6"] = "224.0.0.18" if tok == "mcast" else "ff02::12"
        elif tok == "inet6":
            req["family"] = 6
        elif tok in ("ifdisabled", "-ifdisabled"):
            req["ifdisabled"] = tok == "ifdisabled"
        elif tok in ("vhid", "advskew", "advbase", "pass", "state", "netmask", "prefixlen"):
            if nxt is None:
                return req, "ifconfig: '%s' requires argument" % tok
            if tok in ("netmask", "prefixlen"):
                netmask = nxt
            else:
                req[tok] = nxt
            i += 1
        elif tok != "inet" and "addr_token" in req:
            # A second address is ifconfig's destination address: a word that is no address is refused as one
            # (which is how FreeBSD before 14 answers `peer`).
            if _parse_addr(tok, None, req.get("family", 4)) is None:
                return req, "ifconfig: %s: bad value" % tok
        elif tok != "inet":
            req["addr_token"] = tok
        i += 1
    if "addr_token" in req:
        req["addr"] = _parse_addr(req["addr_token"], netmask, req.get("family", 4))
        if req["addr"] is None:
            return req, "ifconfig: %s: bad value" % req["addr_token"]
    return req, None


def _check_request(req: dict[str, Any]) -> str | None:
    """FreeBSD's own argument checks, in its order; the error it prints, or None."""
    for param in ("advskew", "advbase", "pass", "state"):
        if param in req and "vhid" not in req:
            return "ifconfig: %s requires vhid" % param
    if "vhid" in req:
        vhid = _int(req["vhid"])
        if vhid <= 0 or vhid > 255:
            return "ifconfig: vhid must be greater than 0 and less than 255"
        req["vhid"] = str(vhid)
    if "state" in req and req["state"].lower() not in STATES:
        return "ifconfig: unknown state"
    if not is_root():
        return "ifconfig: %s: Operation not permitted" % ("SIOCSVH" if "vhid" in req else "SIOCAIFADDR")
    return None


def configure(host: Host, name: str, args: list[str]) -> int:
    req, error = _parse_request(args, host.major)
    error = error or _check_request(req)
    if error:
        err(error)
        return 1
    if "link" in req:
        link_set(host, req["link"] == "up")
    if "ifdisabled" in req:
        with host.locked() as state:
            state["ifdisabled"] = req["ifdisabled"]
    if "addr" in req and not req["alias"] and "vhid" not in req:
        # Removing an address finds the vhid it belongs to, as the kernel does.
        owner = [v for v, e in host.read()["vhids"].items()
                 if req["addr"].split("/")[0] in [a.split("/")[0] for a in e["addrs"]]]
        if owner:
            req["vhid"] = owner[0]
    if "vhid" in req:
        return _configure_vhid(host, req)
    if "addr" in req:
        return _plain_alias(host, req)
    return 0


def _configure_vhid(host: Host, req: dict[str, Any]) -> int:
    vhid = req["vhid"]
    with host.locked() as state:
        if not state["carp_loaded"]:
            err("ifconfig: SIOCSVH: Protocol not supported")
            return 1
        entry = state["vhids"].get(vhid)
        if "addr" in req and not req["alias"]:
            if entry is None or req["addr"].split("/")[0] not in [a.split("/")[0] for a in entry["addrs"]]:
                err("ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
                return 1
            entry["addrs"] = [a for a in entry["addrs"] if a.split("/")[0] != req["addr"].split("/")[0]]
            if entry["addrs"]:
                carp.start(host, state, vhid)
            else:
                carp.stop(host, state, vhid, "vhid removed")
                del state["vhids"][vhid]
            return 0
        advskew = _int(req.get("advskew", str(entry["advskew"] if entry else 0)))
        advbase = _int(req.get("advbase", str(entry["advbase"] if entry else 1)))
        if not 0 <= advskew <= 254 or not 1 <= advbase <= 254:
            err("ifconfig: SIOCSVH: Invalid argument")
            return 1
        if entry is None:
            if "addr" not in req and "state" in req:
                err("ifconfig: SIOCSVH: Invalid argument")
                return 1
            entry = state["vhids"][vhid] = {"addrs": [], "pass": "", "pid": 0}
        changed = entry.get("advskew") != advskew or entry.get("advbase") != advbase
        entry["advskew"], entry["advbase"] = advskew, advbase
        if "pass" in req:
            # ifconfig copies the password with strlcpy into CARP_KEY_LEN (20) bytes: the first 19 are kept.
            new_pass = req["pass"].encode()[:19].decode("utf-8", "ignore")
            changed |= entry["pass"] != new_pass
            entry["pass"] = new_pass
        for word in ("peer", "peer6"):
            if word in req:
                changed |= entry.get(word) != req[word]
                entry[word] = req[word]
        if "addr" in req:
            others = [a for a in entry["addrs"] if a.split("/")[0] != req["addr"].split("/")[0]]
            changed |= len(others) == len(entry["addrs"])
            entry["addrs"] = others + [req["addr"]]
        if changed or not (entry.get("active") if carp.native(host) else entry.get("pid")):
            carp.start(host, state, vhid)
        wanted = req.get("state", "").lower()
        if wanted and carp.native(host):
            carp.force(host, state, vhid, wanted)
        elif wanted == "backup":
            carp.force_backup(state, vhid)
        elif wanted == "master":
            carp.start(host, state, vhid)
    return 0


def _plain_alias(host: Host, req: dict[str, Any]) -> int:
    with host.locked() as state:
        aliases = state.setdefault("aliases", [])
        if req["alias"]:
            if req["addr"] not in aliases:
                aliases.append(req["addr"])
                _ip("addr", "add", req["addr"], "dev", host.cfg["iface"])
        else:
            if req["addr"] not in aliases:
                err("ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
                return 1
            aliases.remove(req["addr"])
            _ip("addr", "del", req["addr"], "dev", host.cfg["iface"])
    return 0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def link_set(host: Host, up: bool) -> None:
    """Bring the link down (CARP goes INIT, ucarp exits) or up (routes back, CARP re-initialises)."""
    iface = host.cfg["iface"]
    if not up:
        _ip("link", "set", iface, "down")
        with host.locked() as state:
            carp.interface_down(host, state)
        return
    _ip("link", "set", iface, "up")
    for _ in range(200):
        if carp.link_up(host):
            break
        time.sleep(0.01)
    _ip("route", "replace", "default", "via", host.cfg["gateway"], "dev", iface)
    with host.locked() as state:
        carp.interface_up(host, state)
