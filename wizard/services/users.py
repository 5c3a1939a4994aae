"""People: create an account with a role (its password chosen by the person at first login), change a role,
deactivate and reactivate, change one's own password. Every change is audited (wizard.signals). The last active
admin can neither be demoted nor deactivated, and nobody changes their own role or deactivates themselves."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q

from ..models import Account
from ..roles import Role, role_of
from .errors import ServiceError


def user_create(*, username: str, password: str, role: Role, must_change_password: bool = True) -> Any:
    """An account an admin makes: by default its password is only for the first login (the person then picks
    their own, so no admin knows it)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, password=password)
        user.groups.set([Group.objects.get_or_create(name=role)[0]])
        Account.objects.create(user=user, must_change_password=must_change_password)
    return user


def admin_account(*, username: str, password: str) -> Any:
    """The first admin (manage.py create_admin): created with this password, or, when it exists, its password
    reset and its access restored; a superuser, so Django's admin (beat's schedules) opens for it too. The person
    chose (or was shown) this password: no forced change."""
    with transaction.atomic():
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            user = user_create(username=username, password=password, role=Role.ADMIN, must_change_password=False)
        else:
            user.set_password(password)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
    return user


def _active_admins() -> Any:
    return get_user_model().objects.filter(is_active=True).filter(Q(is_superuser=True) | Q(groups__name=Role.ADMIN))


def _target(actor: Any, user_id: str) -> Any:
    target = get_user_model().objects.filter(pk=user_id).first() if str(user_id).isdigit() else None
    if target is None:
        raise ServiceError("Choose a user.")
    if target == actor:
        raise ServiceError("You cannot change your own role or access; ask another admin.")
    return target


def _refuse_last_admin(target: Any) -> None:
    if role_of(target) == Role.ADMIN and not _active_admins().exclude(pk=target.pk).exists():
        raise ServiceError(f"{target.username} is the last active admin: make someone else admin first.")


def user_set_role(*, actor: Any, user_id: str, role: str) -> Any:
    """Really change the role: the group, and Django's superuser flag with it (a demoted superuser is no admin)."""
    if role not in Role.__members__.values():
        raise ServiceError("Choose a user and a role.")
    target = _target(actor, user_id)
    if role != Role.ADMIN:
        _refuse_last_admin(target)
    with transaction.atomic():
        target.groups.set([Group.objects.get_or_create(name=role)[0]])
        if role != Role.ADMIN and (target.is_superuser or target.is_staff):
            target.is_superuser = target.is_staff = False
            target.save(update_fields=["is_superuser", "is_staff"])
    return target


def user_set_active(*, actor: Any, user_id: str, active: bool) -> Any:
    """Deactivate (no access at all: no login, no page, open streams end) or reactivate an account."""
    target = _target(actor, user_id)
    if not active:
        _refuse_last_admin(target)
    if target.is_active != active:
        target.is_active = active
        target.save(update_fields=["is_active"])
    return target


def password_change(*, request: Any, user: Any, password: str) -> None:
    """Someone chose their own password (validated by Django's validators in the form): the session stays."""
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        Account.objects.update_or_create(user=user, defaults={"must_change_password": False})
    update_session_auth_hash(request, user)


def must_change_password(user: Any) -> bool:
    return bool(user.is_authenticated and Account.objects.filter(user=user, must_change_password=True).exists())
