"""Template context: the user's role, so pages show only the actions it allows; the live pages' settings."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from .roles import RANK, Role, role_of


def role(request: HttpRequest) -> dict[str, Any]:
    current = role_of(getattr(request, "user", None))
    rank = RANK[current] if current else -1
    return {"role": current, "can_operate": rank >= RANK[Role.OPERATOR], "can_admin": rank >= RANK[Role.ADMIN]}


def live(request: HttpRequest) -> dict[str, Any]:
    return {"live_fallback_ms": settings.CARPWEB_LIVE_FALLBACK_MS}
