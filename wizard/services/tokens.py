"""API tokens: created (shown once), checked, revoked. Only a keyed hash of the secret is stored.

A token reads `carpweb_<key_id>_<secret>`: the key id finds the row, the secret is compared by its
HMAC-SHA256 keyed with Django's SECRET_KEY (and SECRET_KEY_FALLBACKS, so a key rotation keeps tokens working
while the old key is listed). A leaked database gives no usable token without the key.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from .. import audit
from ..models import ApiToken
from .errors import RoleRequired, ServiceError

PREFIX = "carpweb_"
SALT = "carpweb.api-token"
MAX_DAYS = 3650


def _digest(secret: str, key: str) -> str:
    return salted_hmac(SALT, secret, secret=key, algorithm="sha256").hexdigest()


def token_create(*, user: Any, name: str = "", read_only: bool = False, expires_days: int | None = None,
                 actor: Any = None) -> tuple[ApiToken, str]:
    """A new token for `user`, and its text: the only time the text exists outside the caller's hands."""
    if not user.is_active:
        raise ServiceError(f"{user.get_username()} is inactive: an inactive account gets no token.")
    if expires_days is not None and not 1 <= expires_days <= MAX_DAYS:
        raise ServiceError(f"A token expires after 1 to {MAX_DAYS} days.")
    key_id, secret = secrets.token_hex(6), secrets.token_hex(24)
    with transaction.atomic():
        token = ApiToken.objects.create(
            key_id=key_id, user=user, name=name.strip()[:100], digest=_digest(secret, settings.SECRET_KEY),
            read_only=read_only, expires=timezone.now() + timedelta(days=expires_days) if expires_days else None)
        audit.record("token.create", obj=token, actor=actor,
                     actor_name="" if actor is not None else "cli",
                     after={"user": user.get_username(), "key_id": key_id, "read_only": read_only,
                            "expires": token.expires.isoformat() if token.expires else None})
    return token, f"{PREFIX}{key_id}_{secret}"


def token_revoke(*, key_id: str, actor: Any = None) -> ApiToken:
    """Revoke a token at once: the next request with it gets 401. A person revokes only their own, an admin any."""
    token = ApiToken.objects.select_related("user").filter(key_id=key_id).first()
    if token is None:
        raise ServiceError(f"No token {key_id!r}.")
    if actor is not None and token.user_id != actor.pk:
        from ..roles import Role, has_role

        if not has_role(actor, Role.ADMIN):
            raise RoleRequired("Only an admin revokes another person's token.")
    if token.revoked is None:
        with transaction.atomic():
            ApiToken.objects.filter(pk=token.pk).update(revoked=timezone.now())
            audit.record("token.revoke", obj=token, actor=actor, actor_name="" if actor is not None else "cli",
                         after={"user": token.user.get_username(), "key_id": token.key_id})
        token.refresh_from_db()
    return token


def token_authenticate(raw: str, source_ip: str = "") -> ApiToken | None:
    """The live token `raw` names (not revoked, not expired, its user active), or None. Notes when it was used."""
    if not raw.startswith(PREFIX):
        return None
    key_id, sep, secret = raw[len(PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(raw) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(key_id=key_id).first()
    if token is None:
        return None
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(hmac.compare_digest(_digest(secret, key), token.digest) for key in keys):
        return None
    now = timezone.now()
    if token.revoked is not None or (token.expires is not None and token.expires <= now) or not token.user.is_active:
        return None
    # At most one write a minute per token: a busy script does not turn every read into a write.
    if token.last_used is None or now - token.last_used > timedelta(seconds=60) or token.last_used_ip != source_ip:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now, last_used_ip=source_ip or None)
    return token
