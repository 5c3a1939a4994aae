"""Roles as groups: viewer < operator < admin. Superusers are admins."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied

ROLES = ("viewer", "operator", "admin")
RANK = {name: i for i, name in enumerate(ROLES)}
# Which role each kind of run needs: operators check and rehearse; admins change what is configured.
RUN_ROLE = {"preflight": "operator", "verify": "operator", "check": "operator", "drill": "operator",
            "maintenance-on": "operator", "maintenance-off": "operator",
            "setup": "admin", "prepare": "admin", "configure": "admin", "remove": "admin"}


def role_of(user: Any) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    if user.is_superuser:
        return "admin"
    names = set(user.groups.values_list("name", flat=True))
    for role in reversed(ROLES):
        if role in names:
            return role
    return None


def has_role(user: Any, needed: str) -> bool:
    role = role_of(user)
    return role is not None and RANK[role] >= RANK[needed]


def require_role(needed: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not has_role(request.user, needed):
                raise PermissionDenied(f"This needs the {needed} role.")
            return view(request, *args, **kwargs)

        wrapper.required_role = needed  # type: ignore[attr-defined]
        return wrapper

    return decorate
