"""Gives every request an id and puts the request's actor and address where audit entries can find them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import audit
from .clientip import client_ip


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = audit.context.set(audit.Context(user=getattr(request, "user", None), request_id=request_id,
                                                source_ip=client_ip(request)))
        try:
            response = self.get_response(request)
        finally:
            audit.context.reset(token)
        response["X-Request-Id"] = request_id
        return response


class PasswordChangeRequiredMiddleware:
    """An account an admin created chooses its own password before anything else (the admin knew the first one)."""

    ALLOWED = ("/account/password/", "/logout/", "/static/", "/health/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.shortcuts import redirect

        from .services import must_change_password

        if not request.path.startswith(self.ALLOWED) and must_change_password(request.user):
            return redirect("password-change")
        return self.get_response(request)
