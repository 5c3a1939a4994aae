"""Auth events and account changes into the audit log (they happen outside carpweb's services)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver

from . import audit

User = get_user_model()


def _user_snapshot(user: Any) -> dict[str, Any]:
    return {"username": user.username, "is_active": user.is_active, "is_superuser": user.is_superuser,
            "password": audit.MASKED, "_token": user.password}


@receiver(user_logged_in)
def _login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record("login", obj=user, actor=user)


@receiver(user_logged_out)
def _logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record("logout", obj=user, actor=user)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # A name that is no account is not echoed: people type their password into the user field, and every viewer
    # reads the audit log.
    typed = str(credentials.get("username", ""))[:150]
    known = User.objects.filter(username=typed).first()
    audit.record("login.failed", obj=known, after={"username": typed if known else "(not an account)"})


@receiver(pre_save, sender=User)
def _user_before(sender: Any, instance: Any, **kwargs: Any) -> None:
    old = User.objects.filter(pk=instance.pk).first() if instance.pk else None
    instance._audit_before = _user_snapshot(old) if old else None


@receiver(post_save, sender=User)
def _user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    before = getattr(instance, "_audit_before", None)
    b, a = audit.diff(before, _user_snapshot(instance))
    if before is not None and b.get("credential") is not None:
        b["password"], a["password"] = b.pop("credential"), a.pop("credential")
    if created:
        audit.record("user.create", obj=instance, after=a)
    elif a:
        audit.record("user.update", obj=instance, before=b, after=a)


@receiver(post_delete, sender=User)
def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    audit.record("user.delete", obj=instance, before={"username": instance.username})


@receiver(m2m_changed, sender=User.groups.through)
def _roles_changed(sender: Any, instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        names = sorted(instance.groups.values_list("name", flat=True))
        audit.record("role.change", obj=instance, after={"roles": names, "change": action.removeprefix("post_")})
