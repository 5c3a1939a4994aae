"""Roles as groups: viewer < operator < admin. Superusers are admins; an inactive account has no role."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLES = tuple(Role)
RANK = {role: i for i, role in enumerate(ROLES)}


def role_of(user: Any) -> Role | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:  # a superuser made with createsuperuser; a demoted one loses the flag (services.users)
        return Role.ADMIN
    names = set(user.groups.values_list("name", flat=True))
    return next((role for role in reversed(ROLES) if role in names), None)


def has_role(user: Any, needed: Role) -> bool:
    role = role_of(user)
    return role is not None and RANK[role] >= RANK[needed]


def require_role(needed: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not has_role(request.user, needed):
                raise PermissionDenied(f"This needs the {needed} role.")
            return view(request, *args, **kwargs)

        wrapper.required_role = needed  # type: ignore[attr-defined]
        return wrapper

    return decorate
