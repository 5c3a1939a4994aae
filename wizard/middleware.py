"""Gives every request an id and puts the request's actor and address where audit entries can find them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import audit


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = audit.context.set(audit.Context(user=getattr(request, "user", None), request_id=request_id,
                                                source_ip=request.META.get("REMOTE_ADDR", "")))
        try:
            response = self.get_response(request)
        finally:
            audit.context.reset(token)
        response["X-Request-Id"] = request_id
        return response
