"""What a lab is made of: its subnet, its hosts and their addresses, ports and FreeBSD versions."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_VERSION = "14.3-RELEASE"
VERSIONS = {"14": "14.3-RELEASE", "13": "13.2-RELEASE-p4", "11": "11.2-RELEASE", "11.2": "11.2-RELEASE"}
USERS = {
    # name: (uid, password, privilege) -- lab-only credentials, printed by `lab status`.
    "root": (0, "carplab-root", "root"),
    "carpadm": (4201, "carplab-adm", "sudo/doas without a password"),
    "carpask": (4202, "carplab-ask", "sudo/doas that asks for a password"),
}


@dataclass(frozen=True)
class HostSpec:
    name: str
    role: str  # server, gateway or client
    address: str
    ssh_port: int
    version: str = DEFAULT_VERSION
    address6: str = ""  # the host's address in the lab's IPv6 documentation prefix
    shells: tuple[tuple[str, str], ...] = ()  # (user, login shell) set by hand; others get FreeBSD's defaults

    def shell_of(self, user: str) -> str:
        """The login shell in the host's passwd: as set, else FreeBSD's default for the release: root's was
        /bin/csh (tcsh) up to 13.x, /bin/sh from 14.0 (FreeBSD commit d410b585b6f); other users /bin/sh."""
        chosen = dict(self.shells).get(user)
        if chosen:
            return chosen
        return "/bin/csh" if user == "root" and int(self.version.split(".")[0]) < 14 else "/bin/sh"


@dataclass
class LabConfig:
    name: str = "carplab"
    subnet: str = "192.0.2.0/24"
    subnet6: str = "2001:db8::/64"
    gateway: str = "192.0.2.1"
    client: str = "192.0.2.50"
    servers: int = 2
    first_server: str = "192.0.2.11"
    server_prefix: str = "server-"
    base_port: int = 22000
    versions: dict[str, str] = field(default_factory=dict)  # host name -> version or major
    shells: dict[str, str] = field(default_factory=dict)  # "host:user" -> login shell (default: FreeBSD's)
    # CARP on the segment: "native" (lab/freebsd/speaker.py, after ip_carp.c) or "ucarp" (Debian's, the old
    # speaker, kept as an interop peer: CARPLAB_SPEAKER=ucarp brings it back for a whole lab)
    speaker: str = field(default_factory=lambda: os.environ.get("CARPLAB_SPEAKER", "native"))
    root_dir: str = field(default_factory=lambda: os.environ.get("CARPWEB_LAB_DIR", "/run/carpweb-lab"))

    def __post_init__(self) -> None:
        if not 1 <= self.servers <= 200:
            raise ValueError("a lab has 1 to 200 servers")
        if len(self.name) > 8 or not self.name.replace("-", "").isalnum():
            raise ValueError("lab name: up to 8 letters, digits or dashes")
        net6 = ipaddress.IPv6Network(self.subnet6)
        if net6.prefixlen > 112 or not (net6.is_private or net6.subnet_of(ipaddress.IPv6Network("2001:db8::/32"))):
            raise ValueError("lab subnet6: a documentation or unique-local prefix of /112 or shorter")
        if self.speaker not in ("native", "ucarp"):
            raise ValueError("lab speaker: native or ucarp")

    @property
    def dir(self) -> str:
        return os.path.join(self.root_dir, self.name)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def port_for(self, address: str) -> int:
        return self.base_port + int(ipaddress.IPv4Address(address)) - int(self.network.network_address)

    def _version(self, name: str) -> str:
        wanted = self.versions.get(name, DEFAULT_VERSION)
        return VERSIONS.get(wanted, wanted)

    def _shells(self, name: str) -> tuple[tuple[str, str], ...]:
        return tuple((key.split(":", 1)[1], shell) for key, shell in sorted(self.shells.items())
                     if key.split(":", 1)[0] == name)

    def address6(self, address: str) -> str:
        """192.0.2.11 -> 2001:db8::11: the IPv4 host number's digits as the IPv6 interface id (easy to read)."""
        offset = int(ipaddress.IPv4Address(address)) - int(self.network.network_address)
        net6 = ipaddress.IPv6Network(self.subnet6)
        return str(ipaddress.IPv6Address(int(net6.network_address) + int(str(offset), 16)))

    @property
    def prefixlen6(self) -> int:
        return ipaddress.IPv6Network(self.subnet6).prefixlen

    def hosts(self) -> list[HostSpec]:
        return [dataclasses.replace(h, shells=self._shells(h.name), address6=self.address6(h.address))
                for h in self._hosts()]

    def _hosts(self) -> list[HostSpec]:
        net = self.network
        reserved = {self.gateway, self.client}
        hosts = [HostSpec("gateway", "gateway", self.gateway, self.port_for(self.gateway), self._version("gateway")),
                 HostSpec("client", "client", self.client, self.port_for(self.client), self._version("client"))]
        addr = ipaddress.IPv4Address(self.first_server)
        for i in range(1, self.servers + 1):
            while str(addr) in reserved:
                addr += 1
            if addr not in net or addr in (net.network_address, net.broadcast_address):
                raise ValueError("subnet %s has no room for %d servers" % (net, self.servers))
            name = "%s%d" % (self.server_prefix, i)
            hosts.append(HostSpec(name, "server", str(addr), self.port_for(str(addr)), self._version(name)))
            addr += 1
        return hosts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
