"""People: create an account with a role, change someone's role (never one's own)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from ..roles import Role
from .errors import ServiceError


def user_create(*, username: str, password: str, role: Role) -> Any:
    user = get_user_model().objects.create_user(username, password=password)
    user.groups.set([Group.objects.get(name=role)])
    return user


def user_set_role(*, actor: Any, user_id: str, role: str) -> Any:
    target = get_user_model().objects.filter(pk=user_id).first() if str(user_id).isdigit() else None
    if target is None or role not in Role.__members__.values():
        raise ServiceError("Choose a user and a role.")
    if target == actor:
        raise ServiceError("You cannot change your own role.")
    target.groups.set([Group.objects.get(name=role)])
    return target
