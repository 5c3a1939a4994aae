"""Validators for every value that can reach a remote shell; each error is a sentence for the admin."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

INTERFACE_RE = re.compile(r"^[a-z][a-z_]*[0-9]+(\.[0-9]{1,4})?$")
# No "-": rc's network.subr reads `inet ...<hex digit>-...` in an alias line as an address range to expand
# (ifalias_af_common_handler), so a password such as "ab-cd" would break the line at boot.
PASSWORD_RE = re.compile(r"^[A-Za-z0-9._+=@%:,~]{1,19}$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")
CARP_KEY_LEN = 20
# ifconfig copies the password with strlcpy(carpr_key, val, CARP_KEY_LEN): at most 19 bytes reach the kernel
# (sbin/ifconfig/carp.c), so a 20th byte would be dropped without a word.
CARP_PASSWORD_MAX = CARP_KEY_LEN - 1


def validate_interface(value: str) -> None:
    if len(value) > 15 or not INTERFACE_RE.match(value):
        raise ValidationError("Enter a FreeBSD interface name such as em0, vtnet1 or igb0.100.")


def validate_carp_password(value: str) -> None:
    if len(value.encode()) > CARP_PASSWORD_MAX:
        raise ValidationError(
            "The CARP password is at most 19 bytes: FreeBSD's ifconfig silently keeps only the first 19.")
    if not PASSWORD_RE.match(value):
        raise ValidationError(
            "Use letters, digits and . _ + = @ % : , ~ only (it is written into /etc/rc.conf, where rc would read "
            "a dash as an address range).")


def validate_vhid(value: int) -> int:
    if not 1 <= value <= 255:
        raise ValidationError("vhid is 1-255.")
    return value


def validate_advbase(value: int) -> int:
    if not 1 <= value <= 254:
        raise ValidationError("advbase is 1-254 seconds.")
    return value


def validate_ssh_user(value: str) -> None:
    if not SSH_USER_RE.match(value):
        raise ValidationError("Enter a Unix user name (lower-case letters, digits, _ and -).")


def validate_name(value: str) -> None:
    if not NAME_RE.match(value):
        raise ValidationError(
            "Use letters, digits, dot, dash and underscore (up to 63), starting with a letter or digit.")


def validate_ssh_host(value: str) -> None:
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value):
        raise ValidationError("Enter an IP address or a host name.")


def parse_network(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            raise ValidationError(
                "%(v)s is an address, not a network: did you mean %(n)s?",
                params={"v": value, "n": ipaddress.IPv4Network(value, strict=False)}) from None
        raise ValidationError("Enter an IPv4 network in CIDR form, such as 192.0.2.0/24.") from None
    if net.prefixlen > 30:
        raise ValidationError("The subnet must hold at least the gateway, two servers and the VIP (/30 or larger).")
    return net


def check_in_subnet(net: ipaddress.IPv4Network, value: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError("Enter an IPv4 address for the %(what)s.", params={"what": what}) from None
    if addr not in net:
        raise ValidationError("%(a)s is outside the subnet %(n)s.", params={"a": addr, "n": net})
    if addr == net.network_address:
        raise ValidationError("%(a)s is the subnet's network address.", params={"a": addr})
    if addr == net.broadcast_address:
        raise ValidationError("%(a)s is the subnet's broadcast address.", params={"a": addr})
    return addr


def parse_service_addresses(value: str) -> list[str]:
    """A service IP's addresses, separated by commas, spaces or lines: IPv4 (prefix optional, /32 then) and IPv6
    (prefix required; never link-local, which every node already has). Returned as "ADDR/PREFIX"."""
    words = [w for w in re.split(r"[\s,]+", value.strip()) if w]
    if not words:
        raise ValidationError("Enter at least one address, such as 192.0.2.100 or 2001:db8::100/64.")
    if len(words) > 16:
        raise ValidationError("At most 16 addresses per service IP; add another service IP for more.")
    out: list[str] = []
    for word in words:
        host, slash, prefix = word.partition("/")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValidationError("%(w)s is not an IPv4 or IPv6 address.", params={"w": word}) from None
        if addr.version == 6 and not slash:
            raise ValidationError("%(w)s needs its prefix length, such as %(w)s/64.", params={"w": word})
        if not prefix.isdigit() and slash:
            raise ValidationError("%(w)s: the prefix length is a number.", params={"w": word})
        plen = int(prefix) if slash else 32
        if not 1 <= plen <= addr.max_prefixlen:
            raise ValidationError("%(w)s: the prefix length is 1-%(m)s.", params={"w": word, "m": addr.max_prefixlen})
        if addr.is_link_local or addr.is_multicast or addr.is_loopback or addr.is_unspecified:
            raise ValidationError("%(w)s is a link-local, multicast, loopback or unspecified address: a service IP "
                                  "must be an address clients reach.", params={"w": word})
        text = f"{addr}/{plen}"
        if any(ipaddress.ip_address(o.split("/")[0]) == addr for o in out):
            raise ValidationError("%(a)s is listed twice.", params={"a": addr})
        out.append(text)
    return out


def parse_network6(value: str) -> ipaddress.IPv6Network:
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            raise ValidationError("%(v)s is an address, not a prefix: did you mean %(n)s?",
                                  params={"v": value, "n": ipaddress.IPv6Network(value, strict=False)}) from None
        raise ValidationError("Enter an IPv6 prefix such as 2001:db8::/64.") from None
    if net.is_link_local:
        raise ValidationError("Enter the nodes' global prefix, not the link-local one.")
    return net
