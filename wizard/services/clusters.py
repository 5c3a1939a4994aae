"""Clusters and their servers: create, update (with an optimistic lock), delete, and what still blocks a run."""

from __future__ import annotations

import ipaddress
import secrets
import string
from typing import Any

from django.db.models import F

from .. import audit, crypto, revisions
from ..models import Cluster, Server
from .errors import ConcurrentEdit, ServiceError

PASSWORD_ALPHABET = string.ascii_letters + string.digits


def carp_password_generate() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(19))  # ifconfig keeps 19 bytes


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


def cluster_save(*, cluster: Cluster | None, data: dict[str, Any], carp_password: str = "",
                 expected_version: int | None = None) -> Cluster:
    """Create or update a cluster's settings (already validated by ClusterForm)."""
    # From the database: a ModelForm has already copied the new values onto the instance.
    stored = Cluster.objects.filter(pk=cluster.pk).first() if cluster and cluster.pk else None
    before = audit.cluster_snapshot(stored) if stored else None
    cluster = cluster or Cluster()
    with revisions.change() as rev:
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
        cluster.rev = rev
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
    with revisions.change() as rev:
        _claim_version(cluster, expected_version)
        revisions.touch_cluster(cluster.pk, rev)
        existing = {s.pk: s for s in cluster.servers.all()}
        by_name = {s.name: s for s in existing.values()}
        keep = []
        for position, row in enumerate(rows):
            # By id from the form; by name when the id is missing (a stale page, a script), never a duplicate.
            server = existing.get(row.get("id") or 0) or by_name.get(row["name"]) or Server(cluster=cluster)
            before = audit.server_snapshot(server) if server.pk else None
            addr_changed = server.pk and (server.ssh_host != row["ssh_host"] or server.ssh_port != row["ssh_port"])
            if server.pk and server.auth != row["auth"] and not row.get("secret"):
                raise ServiceError(f"{row['name']}: changing the authentication method needs the new "
                                   f"{'password' if row['auth'] == Server.Auth.PASSWORD else 'private key'}.")
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
