"""A per-address limit on failed logins, before django-axes' per (user name, address) lockout: one address trying
many user names is stopped too. Counted from axes' own attempt rows, so every web process sees the same count."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.utils import timezone

from .clientip import client_ip


class AddressLimitBackend:
    """Refuses every login from an address with CARPWEB_LOGIN_ADDRESS_LIMIT failures in the cool-off window. It
    authenticates nobody (and has no get_user: sessions name the backend that did)."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        if request is None:
            return None
        since = timezone.now() - timedelta(hours=settings.AXES_COOLOFF_TIME)
        failures = AccessAttempt.objects.filter(ip_address=client_ip(request), attempt_time__gte=since).aggregate(
            n=Sum("failures_since_start"))["n"] or 0
        if failures >= settings.CARPWEB_LOGIN_ADDRESS_LIMIT:
            raise PermissionDenied("too many failed logins from this address")
        return None
