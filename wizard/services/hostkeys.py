"""First contact with servers: their host keys (fetched, confirmed, pinned) and their interfaces (Discover)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import audit, revisions
from ..carp import facts
from ..execution.connect import ssh_connect
from ..models import Cluster, Server
from ..ssh import SSHError, fetch_host_key
from .errors import ServiceError


@dataclass
class HostKeyOffer:
    server: Server
    key_type: str = ""
    key_b64: str = ""
    fingerprint: str = ""
    error: str = ""

    @property
    def matches_pin(self) -> bool:
        return bool(self.server.host_key) and self.server.host_key == f"{self.key_type} {self.key_b64}"


def _parallel(fn: Any, items: list[Any]) -> list[Any]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        return list(pool.map(fn, items))


def host_keys_fetch(*, cluster: Cluster) -> list[HostKeyOffer]:
    """First contact with every server: its host key and fingerprint, nothing trusted yet."""

    def one(server: Server) -> HostKeyOffer:
        try:
            key_type, b64, fp = fetch_host_key(server.name, server.ssh_host, server.ssh_port,
                                               settings.CARPWEB_SSH_CONNECT_TIMEOUT)
        except SSHError as e:
            return HostKeyOffer(server, error=e.message)
        return HostKeyOffer(server, key_type, b64, fp)

    return _parallel(one, list(cluster.servers.all()))


def host_keys_pin(*, cluster: Cluster, confirmed: dict[int, str], user: Any = None, repin: bool = False) -> list[str]:
    """Pin the keys the admin confirmed by fingerprint; a changed key is refused unless `repin` (admins)."""
    pinned = []
    offers = {o.server.pk: o for o in host_keys_fetch(cluster=cluster)}
    for server_id, fp in confirmed.items():
        offer = offers.get(server_id)
        if offer is None or offer.error:
            raise ServiceError(offer.error if offer else "unknown server")
        if offer.fingerprint != fp:
            raise ServiceError(f"{offer.server.name}: the key changed while you were confirming it "
                               f"(now {offer.fingerprint}). Check it again.")
        server = offer.server
        if server.host_key and not offer.matches_pin and not repin:
            raise ServiceError(f"{server.name}: a different key is pinned already; only an admin can re-pin it.")
        if server.host_key and offer.matches_pin:
            continue
        audit.record("hostkey.repin" if server.host_key else "hostkey.pin", obj=server,
                     before={"fingerprint": server.host_key_fingerprint} if server.host_key else None,
                     after={"fingerprint": offer.fingerprint}, actor=user)
        server.host_key = f"{offer.key_type} {offer.key_b64}"
        server.host_key_fingerprint = offer.fingerprint
        server.host_key_pinned_at = timezone.now()
        with revisions.change() as rev:
            server.save(update_fields=["host_key", "host_key_fingerprint", "host_key_pinned_at"])
            revisions.touch_cluster(cluster.pk, rev)
        pinned.append(server.name)
    return pinned


@dataclass
class DiscoveredServer:
    server: Server
    interfaces: list[facts.Interface]
    suggested: str = ""
    error: str = ""


def interfaces_discover(*, cluster: Cluster) -> list[DiscoveredServer]:
    """List every server's interfaces and addresses; suggest the one holding the server's address."""

    def one(server: Server) -> DiscoveredServer:
        try:
            transport = ssh_connect(server)
            try:
                res = transport.run(facts.Ifconfig().command())
                uname = facts.Uname().parse(transport.run(facts.Uname().command()))
            finally:
                transport.close()
        except SSHError as e:
            return DiscoveredServer(server, [], error=e.message)
        found = list(facts.parse_ifconfig(res.stdout).values())
        suggested = next((i.name for i in found if any(a.address == server.address for a in i.inet)), "")
        # What the Service IPs step offers from: the release (unicast needs 14) and the vhids in use.
        seen = {i.name: sorted({c.vhid for c in i.carp}) for i in found if i.name != "lo0"}
        own = {i.name: [f"{a.address}/{a.prefix}" for a in [*i.own_addresses(), *i.own_addresses6()]][:32]
               for i in found if i.name != "lo0"}
        Server.objects.filter(pk=server.pk).update(freebsd_release=uname[1][:40], seen_vhids=seen,
                                                   seen_addresses=own)
        return DiscoveredServer(server, found, suggested)

    return _parallel(one, list(cluster.servers.all()))


