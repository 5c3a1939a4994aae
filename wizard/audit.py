"""The audit log: who changed what, from where, with before/after (secrets masked), hash-chained.

carpweb writes entries itself (services and auth signals call `record`) instead of using a capture library:
django-simple-history and django-auditlog record model saves, but carpweb also logs runs, logins, host key
pins and drift, and needs an append-only, tamper-evident chain that neither provides.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import AuditCheckpoint, AuditEntry, Cluster, Server, ServiceIP

MASKED = "(secret)"
log = logging.getLogger(__name__)


@dataclass
class Context:
    user: Any = None
    request_id: str = ""
    source_ip: str = ""
    token_id: str = ""  # the API token that authenticated the request (wizard.api)


context: contextvars.ContextVar[Context | None] = contextvars.ContextVar("carpweb_audit", default=None)


def content(entry: AuditEntry) -> str:
    """The canonical text a hash covers."""
    return json.dumps({
        "ts": entry.ts.isoformat(), "actor": entry.actor_name, "request_id": entry.request_id,
        "source_ip": entry.source_ip or "", "action": entry.action, "object_type": entry.object_type,
        "object_id": entry.object_id, "object_repr": entry.object_repr, "cluster_id": entry.cluster_id,
        "cluster": entry.cluster_name, "before": entry.before, "after": entry.after, "link": entry.link,
        # token_id since migration 0019 (older migrations pass their historical model, which lacks it)
        "prev": entry.prev_hash, **({"token": token} if (token := getattr(entry, "token_id", "")) else {})},
        sort_keys=True, separators=(",", ":"), default=str)


def digest(entry: AuditEntry, key: str | None = None) -> str:
    """HMAC-SHA256 of the entry's content (its predecessor's MAC included) with the newest audit key: a MAC,
    not a plain hash, so rewriting the database is not enough to re-seal an edited entry."""
    secret = key if key is not None else settings.CARPWEB_AUDIT_KEYS[0]
    return hmac.new(secret.encode(), content(entry).encode(), hashlib.sha256).hexdigest()


def sealed(entry: AuditEntry) -> bool:
    """Whether the entry's MAC is right under any configured key (older keys stay listed after a rotation)."""
    return any(hmac.compare_digest(digest(entry, key), entry.hash) for key in settings.CARPWEB_AUDIT_KEYS)


def log_head(where: str) -> None:
    """The chain's head (last id and MAC) in this process's log: a copy outside the database to compare with."""
    head = AuditEntry.objects.order_by("-id").values_list("id", "hash").first()
    if head:
        log.info("audit head (%s): entry %s mac %s", where, head[0], head[1])


def record(action: str, *, obj: Any = None, cluster: Cluster | None = None, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, link: str = "", actor: Any = None, actor_name: str = "") -> AuditEntry:
    ctx = context.get() or Context()
    user = actor if actor is not None else ctx.user
    is_user = user is not None and getattr(user, "is_authenticated", False)
    if cluster is None and isinstance(obj, Cluster):
        cluster = obj
    if cluster is None and isinstance(obj, Server | ServiceIP):
        cluster = obj.cluster
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:  # one writer at a time extends the chain
                cur.execute("SELECT pg_advisory_xact_lock(727274)")
        prev = AuditEntry.objects.order_by("-id").values_list("hash", flat=True).first() or ""
        entry = AuditEntry(
            ts=timezone.now(), actor=user if is_user else None,
            actor_name=actor_name or (user.get_username() if is_user else "system"),
            request_id=ctx.request_id, source_ip=ctx.source_ip or None, action=action,
            object_type=type(obj).__name__.lower() if obj is not None else "",
            object_id=str(getattr(obj, "pk", "") or ""), object_repr=str(obj)[:200] if obj is not None else "",
            cluster_id=cluster.pk if cluster else None, cluster_name=cluster.name if cluster else "",
            before=before, after=after, link=link, prev_hash=prev, token_id=ctx.token_id)
        entry.hash = digest(entry)
        entry.save()
    return entry


def verify(*, full: bool = True) -> tuple[bool, int | None, str]:
    """Walk the chain in order: (intact, first broken entry id, why). Not full: start at the latest verified
    checkpoint (whose entry must still carry the hash it had) and check only what was added since. Each intact
    walk leaves a checkpoint at its last entry."""
    prev, count, after = "", 0, 0
    checkpoint = None if full else AuditCheckpoint.objects.first()
    if checkpoint is not None:
        entry = AuditEntry.objects.filter(pk=checkpoint.entry_id).first()
        if entry is None or entry.hash != checkpoint.hash or not sealed(entry):
            return False, checkpoint.entry_id, (f"entry {checkpoint.entry_id} no longer matches the checkpoint "
                                                "verified earlier: it was edited or removed")
        prev, count, after = checkpoint.hash, checkpoint.count, checkpoint.entry_id
    last = None
    for entry in AuditEntry.objects.filter(pk__gt=after).order_by("id").iterator(chunk_size=2000):
        count += 1
        if entry.prev_hash != prev:
            return False, entry.pk, (f"entry {entry.pk} does not follow the entry before it: an entry was removed "
                                     "or the order was changed")
        if not sealed(entry):
            return False, entry.pk, (f"entry {entry.pk} was edited after it was written (its MAC does not match "
                                     "under any audit key)")
        prev, last = entry.hash, entry.pk
    if last is not None:
        AuditCheckpoint.objects.get_or_create(entry_id=last, defaults={"hash": prev, "count": count})
        log.info("audit checkpoint: entry %s mac %s (%s entries)", last, prev, count)
    since = f", checked from entry {after + 1} on (entries up to {after} were verified before)" if after else ""
    return True, None, f"{count} entries, chain intact{since}"


def cluster_snapshot(cluster: Cluster) -> dict[str, Any]:
    return {"name": cluster.name, "subnet": cluster.subnet, "gateway": cluster.gateway, "subnet6": cluster.subnet6,
            "interface": cluster.interface, "master_advskew": cluster.master_advskew,
            "configure_service_ip": cluster.configure_service_ip}


def service_ip_snapshot(sip: ServiceIP) -> dict[str, Any]:
    return {"interface": sip.interface, "vhid": sip.vhid, "addresses": list(sip.addresses), "advbase": sip.advbase,
            "announce": sip.announce, "carp_password": MASKED if sip.password_enc else "", "_token": sip.password_enc}


def server_snapshot(server: Server) -> dict[str, Any]:
    return {"name": server.name, "address": server.address, "address6": server.address6, "ssh_host": server.ssh_host,
            "ssh_port": server.ssh_port, "ssh_user": server.ssh_user, "auth": server.auth,
            "privilege": server.privilege, "preferred_master": server.preferred_master, "role": server.role,
            "credential": MASKED if server.secret_enc else "", "_token": server.secret_enc,
            "host_key_fingerprint": server.host_key_fingerprint}


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only what changed; a replaced secret shows as '(secret) replaced', never its value or token."""
    before, after = before or {}, after or {}
    keys = [k for k in {**before, **after} if not k.startswith("_")]
    b, a = {}, {}
    for key in keys:
        if before.get(key) != after.get(key):
            b[key], a[key] = before.get(key), after.get(key)
    if before and after and before.get("_token") != after.get("_token"):
        secret_key = "carp_password" if "carp_password" in after else "credential"
        b[secret_key], a[secret_key] = MASKED, MASKED + " replaced"
    return b, a
