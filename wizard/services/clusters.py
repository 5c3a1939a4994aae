"""Clusters and their servers: create, update (with an optimistic lock), delete, and what still blocks a run."""

from __future__ import annotations

import ipaddress
import secrets
import string
from dataclasses import dataclass
from typing import Any

from django.db.models import F

from .. import audit, crypto, revisions
from ..carp import facts
from ..models import CarpEvent, Cluster, Drill, Notice, Run, Server, ServiceIP
from .errors import ConcurrentEdit, ServiceError

PASSWORD_ALPHABET = string.ascii_letters + string.digits


def carp_password_generate() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(19))  # ifconfig keeps 19 bytes


APPLIED_FIELDS = ("interface", "vhid", "addresses", "advbase", "announce", "carp_password")  # of a service IP


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
    """Create or update a cluster's node-wide settings (already validated by ClusterForm); a new cluster gets
    its first service IP from `data["first_service_ip"]` (ClusterForm) or the one-VIP keys (vip, vhid, advbase,
    vip_prefix: today's import format)."""
    # From the database: a ModelForm has already copied the new values onto the instance.
    stored = Cluster.objects.filter(pk=cluster.pk).first() if cluster and cluster.pk else None
    before = audit.cluster_snapshot(stored) if stored else None
    cluster = cluster or Cluster()
    created = cluster.pk is None
    with revisions.change() as rev:
        _claim_version(cluster, expected_version)
        for key in ("name", "subnet", "gateway", "subnet6", "master_advskew", "configure_service_ip"):
            if key in data:
                setattr(cluster, key, data[key])
        if "interface" in data and data["interface"]:
            cluster.interface = data["interface"]
            # A first service IP made before the interface was chosen lives on the nodes' interface.
            if cluster.pk:
                ServiceIP.objects.filter(cluster=cluster, interface="").update(interface=cluster.interface)
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
    first = data.get("first_service_ip") or (
        {"vhid": data.get("vhid", 1), "advbase": data.get("advbase", 1), "password": carp_password,
         "addresses": [f"{data['vip']}/{data.get('vip_prefix', 32)}"]} if data.get("vip") else None)
    if created and first:
        row = {"interface": first.get("interface") or cluster.interface, "vhid": first["vhid"],
               "advbase": first.get("advbase") or 1, "addresses": first["addresses"],
               "password": first.get("password") or carp_password, "announce": first.get("announce", "")}
        service_ips_save(cluster=cluster, rows=[row])
    elif first is not None and not created and data.get("vip"):  # one-VIP callers (import) update the first one
        current = cluster.service_ips.first()
        row = {"id": current.pk if current else None, "interface": current.interface if current else
               cluster.interface, "vhid": first["vhid"], "advbase": first.get("advbase") or 1,
               "addresses": first["addresses"], "password": first.get("password") or carp_password,
               "announce": current.announce if current else ""}
        service_ips_save(cluster=cluster, rows=[row, *[_row_of(o) for o in cluster.service_ips.all()[1:]]])
    return cluster


def _save_audited(obj: Any, before: dict[str, Any] | None, snapshot: Any, kind: str, secret: str) -> int:
    """Validate and save a server or service IP row; audit its creation or what changed (a replaced secret as
    one more `credential.replace` entry, never its value)."""
    obj.full_clean(exclude=["cluster"])
    obj.save()
    b, a = audit.diff(before, snapshot(obj))
    if before is None:
        audit.record(f"{kind}.create", obj=obj, after=a)
    elif a:
        audit.record(f"{kind}.update", obj=obj, before=b, after=a)
        if secret in a:
            audit.record("credential.replace", obj=obj, after={secret: audit.MASKED + " replaced"})
    return int(obj.pk)


def _row_of(sip: ServiceIP) -> dict[str, Any]:
    return {"id": sip.pk, "interface": sip.interface, "vhid": sip.vhid, "addresses": list(sip.addresses),
            "advbase": sip.advbase, "announce": sip.announce, "password": ""}


@dataclass(frozen=True)
class ServiceIPsSaved:
    service_ips: list[ServiceIP]
    applied_changed: list[str]  # settings Configure already put on the nodes that this save changed


def service_ips_save(*, cluster: Cluster, rows: list[dict[str, Any]], expected_version: int | None = None) -> \
        ServiceIPsSaved:
    """Replace the cluster's service IPs with the validated rows (ServiceIPFormSet); unchanged passwords are kept,
    a new one without a password gets a generated one. A service IP that Configure put on the nodes cannot simply
    be dropped: Remove takes it off them first. Every change is audited per service IP. Says which settings
    already on the nodes changed (the page offers Configure for them)."""
    with revisions.change() as rev:
        _claim_version(cluster, expected_version)
        revisions.touch_cluster(cluster.pk, rev)
        existing = {s.pk: s for s in cluster.service_ips.all()}
        snapshots = {pk: audit.service_ip_snapshot(s) for pk, s in existing.items()}
        by_key = {(s.interface, s.vhid): s for s in existing.values()}
        keep = []
        for position, row in enumerate(rows):
            interface = row.get("interface") or cluster.interface
            sip = existing.get(row.get("id") or 0) or by_key.get((interface, row["vhid"])) or \
                ServiceIP(cluster=cluster)
            before = audit.service_ip_snapshot(sip) if sip.pk else None
            if sip.configured and (sip.interface, sip.vhid) != (interface, row["vhid"]):
                raise ServiceError(f"{sip} is configured on the nodes: its vhid and interface stay as they are (the "
                                   "old vhid would stay behind on the nodes). Take it off them with \"Remove it "
                                   "from the nodes\" first, or add a new service IP.")
            sip.position, sip.interface, sip.vhid = position, interface, row["vhid"]
            sip.addresses, sip.advbase = list(row["addresses"]), row.get("advbase") or 1
            sip.announce = row.get("announce") or ServiceIP.Announce.MULTICAST
            if row.get("password"):
                sip.password_enc = crypto.encrypt(row["password"])
            elif not sip.password_enc:
                sip.password_enc = crypto.encrypt(carp_password_generate())
            keep.append(_save_audited(sip, before, audit.service_ip_snapshot, "service_ip", "carp_password"))
        gone = list(cluster.service_ips.exclude(pk__in=keep))
        configured = [g for g in gone if g.configured]
        if configured:
            raise ServiceError(f"{configured[0]} is configured on the nodes: take it off them first with "
                               "\"Remove from the nodes\" on the cluster page, then delete it here.")
        for sip in gone:
            audit.record("service_ip.delete", obj=sip, before=audit.diff(None, audit.service_ip_snapshot(sip))[1])
            sip.delete()
    return ServiceIPsSaved(list(cluster.service_ips.all()), applied_settings_changed(snapshots, cluster))


def applied_settings_changed(before: dict[int, dict[str, Any]], cluster: Cluster) -> list[str]:
    """Which settings that Configure already applied on the servers a save changed (`before`: the service IPs'
    snapshots by id), as "vhid N: field, field"."""
    changed = []
    for sip in cluster.service_ips.all():
        if not sip.configured or sip.pk not in before:
            continue
        b, a = audit.diff(before[sip.pk], audit.service_ip_snapshot(sip))
        fields = [k for k in APPLIED_FIELDS if k in a]
        if fields:
            changed.append(f"vhid {sip.vhid}: {', '.join(fields)}")
    return changed


def shared_servers(*, cluster: Cluster, endpoints: list[tuple[str, int]] | None = None) -> dict[str, str]:
    """Other clusters that hold one of these nodes (same SSH endpoint, or same address): {cluster: server}.
    FreeBSD's rc.conf, demotion and devd belong to the node, so one node belongs to one cluster."""
    nodes = list(cluster.servers.filter(role=Server.Role.NODE)) if endpoints is None else []
    endpoints = endpoints if endpoints is not None else [(s.ssh_host, s.ssh_port) for s in nodes]
    found: dict[str, str] = {}
    for host, port in endpoints:
        other = Server.objects.filter(role=Server.Role.NODE, ssh_host=host, ssh_port=port) \
            .exclude(cluster_id=cluster.pk).select_related("cluster").first()
        if other is not None:
            found.setdefault(other.cluster.name, other.name)
    return found


def cluster_delete(*, cluster: Cluster) -> None:
    snapshot = audit.diff(None, audit.cluster_snapshot(cluster))[1]
    snapshot["servers"] = [s.name for s in cluster.servers.all()]
    audit.record("cluster.delete", obj=cluster, before=snapshot)
    cluster.delete()


def servers_save(*, cluster: Cluster, rows: list[dict[str, Any]], expected_version: int | None = None) -> list[Server]:
    """Replace the cluster's server list with the validated rows; unchanged secrets are kept. A node that is
    already another cluster's node is refused: add a service IP to that cluster instead."""
    shared = shared_servers(cluster=cluster, endpoints=[(r["ssh_host"], r["ssh_port"]) for r in rows
                                                        if (r.get("role") or Server.Role.NODE) == Server.Role.NODE])
    if shared:
        name, node = next(iter(shared.items()))
        raise ServiceError(f"{node} is already a node of cluster {name}: one server belongs to one cluster, "
                           f"because rc.conf, demotion and maintenance are the node's. Add a service IP to cluster "
                           f"{name} instead.")
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
            server.address6 = row.get("address6") or None
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
            keep.append(_save_audited(server, before, audit.server_snapshot, "server", "credential"))
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
    if not cluster.service_ips.exists():
        problems.append("Add a service IP (step 4).")
    unpinned = [s.name for s in servers if not s.host_key]
    if unpinned:
        problems.append("Confirm the host keys of " + ", ".join(unpinned) + " (Review).")
    net = ipaddress.IPv4Network(cluster.subnet)
    outside = [s.name for s in servers if ipaddress.IPv4Address(s.address) not in net]
    if outside:
        problems.append("Addresses outside the subnet: " + ", ".join(outside) + ".")
    return problems


def service_ip_suggest(*, cluster: Cluster, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A new row's defaults: the nodes' interface and the first vhid free there, counting this form's rows and
    what the nodes showed when interfaces were last discovered (`Server.seen_vhids`)."""
    interface = cluster.interface
    used = {int(str(r.get("vhid"))) for r in rows if str(r.get("vhid") or "").isdigit()
            and (r.get("interface") or interface) == interface}
    used |= {v for s in cluster.servers.all() for v in (s.seen_vhids or {}).get(interface, [])}
    vhid = next((n for n in range(1, 256) if n not in used), 1)
    return {"interface": interface, "vhid": vhid, "advbase": 1, "announce": ServiceIP.Announce.MULTICAST}


def interfaces_seen(*, cluster: Cluster) -> list[str]:
    """The interfaces every CARP node showed when discovery last looked (a service IP's interface must exist on
    each of them), the nodes' own first."""
    nodes = list(cluster.servers.filter(role=Server.Role.NODE))
    common = set.intersection(*(set(s.seen_vhids or {}) for s in nodes)) if nodes else set()
    return sorted(common, key=lambda name: (name != cluster.interface, name))


def unicast_problem(nodes: list[Server], addresses: list[str], interface: str, node_interface: str) -> str | None:
    """Why unicast cannot be offered here (None: it can): ifconfig's `peer` takes one address, the other node's
    on the same interface; FreeBSD 14.0 or later (checked by preflight, which reads each node's version)."""
    if len(nodes) != 2:
        return f"Unicast names one peer, so it needs exactly 2 nodes (this cluster has {len(nodes)})."
    if interface != node_interface:
        for family6, word in ((False, "IPv4"), (True, "IPv6")):
            missing = [s.name for s in nodes if not s.address_on(interface, family6)]
            if any((":" in a) == family6 for a in addresses) and missing:
                return (f"Unicast on {interface} sends to the other node's {word} address there, and discovery saw "
                        f"none on {', '.join(missing)}'s {interface}. Give it one and run Discover again, or choose "
                        "multicast.")
        return None
    if any(":" in a for a in addresses) and not all(s.address6 for s in nodes):
        return "Unicast IPv6 needs every node's IPv6 address (Servers step)."
    return None


def unicast_offer(*, cluster: Cluster) -> str:
    """Why unicast cannot be chosen for this cluster ("" when it can): FreeBSD 14.0+ on every node (as the last
    discovery or preflight read it) and exactly two nodes."""
    nodes = list(cluster.servers.filter(role=Server.Role.NODE))
    pair = unicast_problem(nodes, [], cluster.interface, cluster.interface)
    if pair:
        return pair
    old = [f"{s.name} ({s.freebsd_release})" for s in nodes if s.freebsd_release and
           (facts.parse_freebsd_major(s.freebsd_release) or 0) < 14]
    if old:
        return (f"Unicast needs FreeBSD 14.0 or later (ifconfig's peer); {', '.join(old)} runs an older release. "
                "Multicast works everywhere.")
    return ""


def cluster_merge(*, into: Cluster, source: Cluster) -> list[ServiceIP]:
    """Fold `source` (a cluster on the same servers, as carpweb before service IPs had to make) into `into`: its
    service IPs, runs, drills, CARP events and notices move; its server rows go (they are `into`'s machines);
    nothing on the servers changes. The audit log keeps what it said (entries name the old cluster)."""
    if into.pk == source.pk:
        raise ServiceError("A cluster cannot be merged into itself.")
    ours = set(into.service_ips.values_list("interface", "vhid"))
    clash = [s for s in source.service_ips.all() if (s.interface, s.vhid) in ours]
    if clash:
        raise ServiceError(f"{clash[0]} of {source.name} uses a vhid {into.name} already has on {clash[0].interface}: "
                           "change one of them first.")
    moved = list(source.service_ips.all())
    with revisions.change() as rev:
        start = into.service_ips.count()
        for i, sip in enumerate(moved):
            ServiceIP.objects.filter(pk=sip.pk).update(cluster=into, position=start + i)
        for model in (Run, Drill, CarpEvent, Notice):
            model.objects.filter(cluster=source).update(cluster=into)  # type: ignore[attr-defined]
        by_name = {s.name: s for s in into.servers.all()}
        for server in source.servers.all():  # events and steps name the node; point them at into's row
            same = by_name.get(server.name)
            if same is not None:
                CarpEvent.objects.filter(server=server).update(server=same)
        Cluster.objects.filter(pk=into.pk).update(
            service_ip_configured=into.service_ip_configured or source.service_ip_configured, rev=rev)
        audit.record("cluster.merge", obj=into, after={"merged": source.name,
                                                       "service_ips": [str(s) for s in moved]})
        source.delete()
    return list(into.service_ips.all())
