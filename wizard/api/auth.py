"""Who calls the API: a bearer token (`Authorization: Bearer carpweb_<id>_<secret>`), or the pages' session.

A token's request is audited as its user, with the token's id (audit.Context.token_id). A read-only token may
only read, whatever its user's role; otherwise the token acts with its user's role.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from .. import audit
from ..clientip import client_ip
from ..models import ApiToken
from ..roles import Role, has_role
from ..services import tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1", "replace")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = tokens.token_authenticate(raw.strip(), client_ip(request))
        if token is None:
            raise exceptions.AuthenticationFailed("The token is unknown, revoked or expired.")
        ctx = audit.context.get()
        if ctx is not None:  # every audit entry of this request names the token as well as the user
            ctx.user, ctx.token_id = token.user, token.key_id
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="carpweb"'


def token_of(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


class HasRole(permissions.BasePermission):
    """The view's `read_role` for safe methods (viewer by default), its `write_role` for the others (operator by
    default), or `action_roles[action]` where it names one; a read-only token only reads."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        safe = request.method in permissions.SAFE_METHODS
        token = token_of(request)
        if not safe and token is not None and token.read_only:
            self.message = "This token is read-only."
            return False
        needed = getattr(view, "read_role", Role.VIEWER) if safe else getattr(view, "write_role", Role.OPERATOR)
        needed = getattr(view, "action_roles", {}).get(getattr(view, "action", None), needed)
        if not has_role(request.user, needed):
            self.message = f"This needs the {needed} role."
            return False
        return True


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Requests per token (per user for the session, per address for nobody): CARPWEB_API_RATE, default 600/min."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = token_of(request)
        if token is not None:
            ident = f"t:{token.key_id}"
        elif request.user and request.user.is_authenticated:
            ident = f"u:{request.user.pk}"
        else:
            ident = f"a:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the OpenAPI document describes the token (generated clients send it as a bearer token)."""

    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "carpweb_<id>_<secret>"}
