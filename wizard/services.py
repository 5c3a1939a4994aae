"""Use cases, one verb each: the only place that writes clusters, servers, pins and runs."""

from __future__ import annotations

import ipaddress
import secrets
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import audit, crypto, runner, tasks
from .carp import facts
from .models import Cluster, Run, Server
from .runner import endpoint_for
from .ssh import Connection, SSHError, fetch_host_key

PASSWORD_ALPHABET = string.ascii_letters + string.digits


class ServiceError(Exception):
    """A use case refused; the message is for the admin."""


def carp_password_generate() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(20))


APPLIED_FIELDS = ("vip", "vip_prefix", "vhid", "advbase", "carp_password")


def _claim_version(cluster: Cluster, expected_version: int | None) -> None:
    """Optimistic lock: the save goes through only if nobody saved the cluster since the form was opened."""
    if expected_version is None or not cluster.pk:
        return
    if not Cluster.objects.filter(pk=cluster.pk, version=expected_version).update(version=F("version") + 1):
        current = Cluster.objects.filter(pk=cluster.pk).values_list("updated", flat=True).first()
        when = f" at {current:%H:%M:%S} UTC" if current else ""
        raise ConcurrentEdit(f"Someone else saved {cluster.name}{when} since you opened this page. Nothing of "
                             "yours was saved: reload the page to see their changes, then make yours again.")
    cluster.version = expected_version + 1


class ConcurrentEdit(ServiceError):
    """Two people edited the same object; the second save is refused."""


def cluster_save(*, cluster: Cluster | None, data: dict[str, Any], carp_password: str = "",
                 expected_version: int | None = None) -> Cluster:
    """Create or update a cluster's settings (already validated by ClusterForm)."""
    # From the database: a ModelForm has already copied the new values onto the instance.
    stored = Cluster.objects.filter(pk=cluster.pk).first() if cluster and cluster.pk else None
    before = audit.cluster_snapshot(stored) if stored else None
    cluster = cluster or Cluster()
    _claim_version(cluster, expected_version)
    for key in ("name", "subnet", "gateway", "vip", "vip_prefix", "vhid", "advbase", "master_advskew",
                "configure_service_ip"):
        if key in data:
            setattr(cluster, key, data[key])
    if "interface" in data and data["interface"]:
        cluster.interface = data["interface"]
    if carp_password:
        cluster.carp_password_enc = crypto.encrypt(carp_password)
    elif not cluster.carp_password_enc:
        cluster.carp_password_enc = crypto.encrypt(carp_password_generate())
    if cluster.pk and expected_version is None:
        cluster.version += 1
    cluster.full_clean()
    cluster.save()
    b, a = audit.diff(before, audit.cluster_snapshot(cluster))
    if before is None:
        audit.record("cluster.create", obj=cluster, after=a)
    elif a:
        audit.record("cluster.update", obj=cluster, before=b, after=a)
        if "carp_password" in a and "credential" not in a:
            audit.record("credential.replace", obj=cluster, after={"carp_password": audit.MASKED + " replaced"})
    return cluster


def applied_settings_changed(before: dict[str, Any] | None, cluster: Cluster) -> list[str]:
    """Which settings that Configure already applied on the servers this save changed."""
    if before is None or not cluster.service_ip_configured:
        return []
    b, a = audit.diff(before, audit.cluster_snapshot(cluster))
    return [k for k in APPLIED_FIELDS if k in a]


def cluster_delete(*, cluster: Cluster) -> None:
    snapshot = audit.diff(None, audit.cluster_snapshot(cluster))[1]
    snapshot["servers"] = [s.name for s in cluster.servers.all()]
    audit.record("cluster.delete", obj=cluster, before=snapshot)
    cluster.delete()


def servers_save(*, cluster: Cluster, rows: list[dict[str, Any]], expected_version: int | None = None) -> list[Server]:
    """Replace the cluster's server list with the validated rows; unchanged secrets are kept."""
    with transaction.atomic():
        _claim_version(cluster, expected_version)
        existing = {s.pk: s for s in cluster.servers.all()}
        by_name = {s.name: s for s in existing.values()}
        keep = []
        for position, row in enumerate(rows):
            # By id from the form; by name when the id is missing (a stale page, a script), never a duplicate.
            server = existing.get(row.get("id") or 0) or by_name.get(row["name"]) or Server(cluster=cluster)
            before = audit.server_snapshot(server) if server.pk else None
            addr_changed = server.pk and (server.ssh_host != row["ssh_host"] or server.ssh_port != row["ssh_port"])
            for key in ("name", "address", "ssh_host", "ssh_port", "ssh_user", "auth", "privilege",
                        "preferred_master"):
                setattr(server, key, row[key])
            server.role = row.get("role") or Server.Role.NODE
            server.position = position
            if row.get("secret"):
                server.secret_enc = crypto.encrypt(row["secret"])
            if addr_changed:
                # Another endpoint is another machine as far as trust goes: confirm its key again.
                server.host_key = server.host_key_fingerprint = ""
                server.host_key_pinned_at = None
            server.full_clean(exclude=["cluster"])
            server.save()
            keep.append(server.pk)
            b, a = audit.diff(before, audit.server_snapshot(server))
            if before is None:
                audit.record("server.create", obj=server, after=a)
            elif a:
                audit.record("server.update", obj=server, before=b, after=a)
                if "credential" in a:
                    audit.record("credential.replace", obj=server, after={"credential": audit.MASKED + " replaced"})
        for gone in cluster.servers.exclude(pk__in=keep):
            audit.record("server.delete", obj=gone, before=audit.diff(None, audit.server_snapshot(gone))[1])
            gone.delete()
    return list(cluster.servers.all())


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
        server.save(update_fields=["host_key", "host_key_fingerprint", "host_key_pinned_at"])
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
            with Connection(endpoint_for(server), settings.CARPWEB_SSH_CONNECT_TIMEOUT,
                            settings.CARPWEB_SSH_COMMAND_TIMEOUT) as conn:
                res = conn.run("ifconfig")
        except SSHError as e:
            return DiscoveredServer(server, [], error=e.message)
        found = list(facts.parse_ifconfig(res.stdout).values())
        suggested = next((i.name for i in found if any(a.address == server.address for a in i.inet)), "")
        return DiscoveredServer(server, found, suggested)

    return _parallel(one, list(cluster.servers.all()))


def run_start(*, cluster: Cluster, kind: str, user: Any = None, target: str = "", confirm: bool = False,
              actor_name: str = "") -> Run:
    """Start a run after the transaction commits; refused while another run of the cluster is in progress."""
    if kind not in Run.Kind.values:
        raise ServiceError(f"unknown run kind {kind!r}")
    node = None
    if kind in ("maintenance-on", "maintenance-off"):
        node = cluster.servers.filter(name=target, role=Server.Role.NODE).first()
        if node is None:
            raise ServiceError(f"Name the CARP node to put in or out of maintenance (got {target!r}).")
        others = cluster.servers.filter(role=Server.Role.NODE).exclude(pk=node.pk)
        if kind == "maintenance-on" and not others.filter(maintenance=False).exists() and not confirm:
            raise ServiceError("Every other node is already in maintenance: the VIP would have no preferred "
                               "home. Confirm explicitly to do it anyway.")
    problems = cluster_readiness(cluster=cluster)
    if problems:
        raise ServiceError("Not ready to run: " + " ".join(problems))
    with transaction.atomic():
        # The row lock serialises concurrent starts across web processes and machines.
        Cluster.objects.select_for_update().get(pk=cluster.pk)
        runs_reap()  # a run whose worker died must not block the cluster forever
        busy = cluster.runs.filter(status__in=[Run.Status.PENDING, Run.Status.RUNNING]).first()
        if busy:
            raise ServiceError(f"{busy} is still in progress on {cluster.name}; wait for it to finish.")
        is_user = user is not None and user.is_authenticated
        run = Run.objects.create(cluster=cluster, kind=kind, target=node, created_by=user if is_user else None,
                                 created_by_name=user.get_username() if is_user else (actor_name or "cli"))
        tasks.run_execute.delay_on_commit(run.pk)  # type: ignore[attr-defined]  # celery-types lags 5.4
        audit.record("run.start", obj=run, cluster=cluster, after={"kind": kind, "target": target or None},
                     link=f"/runs/{run.pk}/", actor=user, actor_name="" if is_user else run.created_by_name)
    return run


def runs_reap() -> list[int]:
    return runner.runs_reap()


def cluster_readiness(*, cluster: Cluster) -> list[str]:
    """What still blocks a run, as sentences."""
    problems = []
    servers = list(cluster.servers.all())
    if len([s for s in servers if s.role == Server.Role.NODE]) < 2:
        problems.append("A cluster needs at least 2 servers.")
    if not cluster.interface:
        problems.append("Choose the interface (step 3).")
    unpinned = [s.name for s in servers if not s.host_key]
    if unpinned:
        problems.append("Confirm the host keys of " + ", ".join(unpinned) + " (Review).")
    net = ipaddress.IPv4Network(cluster.subnet)
    outside = [s.name for s in servers if ipaddress.IPv4Address(s.address) not in net]
    if outside:
        problems.append("Addresses outside the subnet: " + ", ".join(outside) + ".")
    return problems
