"""Validators for every value that can reach a remote shell; each error is a sentence for the admin."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

INTERFACE_RE = re.compile(r"^[a-z][a-z_]*[0-9]+(\.[0-9]{1,4})?$")
PASSWORD_RE = re.compile(r"^[A-Za-z0-9._+=@%:,~-]{1,19}$")
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
            "Use letters, digits and . _ + = @ % : , ~ - only (it is written into /etc/rc.conf).")


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
