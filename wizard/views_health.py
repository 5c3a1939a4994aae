"""Health for machines (GET /health/, no login) and the worker warnings that pages poll."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .health import health_check, worker_answers
from .live.hub import HUB
from .metrics import registry as metrics_registry
from .roles import Role, has_role, require_role


@require_GET
@login_not_required
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer and at least one worker does; 503 otherwise. Anonymous callers
    (load balancers) get ok/failing only; a logged-in admin also gets the workers' names, the errors, beat and
    `streams` (the live streams this web process holds open)."""
    result = health_check()
    status = 200 if result.healthy else 503
    if not has_role(request.user, Role.ADMIN):
        return JsonResponse(result.as_public_dict(), status=status)
    return JsonResponse({**result.as_dict(), "streams": HUB.watchers}, status=status)


@require_GET
@login_not_required
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a bearer of CARPWEB_METRICS_TOKEN; nothing at all when no token is set."""
    token = settings.CARPWEB_METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: set CARPWEB_METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("a bearer token is needed (Authorization: Bearer ...)", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="carpweb metrics"'
        return response
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)


@require_GET
@require_role(Role.VIEWER)
def worker_banner(request: HttpRequest) -> HttpResponse:
    """The inventory's warning while no worker answers; empty (and gone) once one does."""
    return render(request, "wizard/_worker_banner.html", {"worker_answers": worker_answers()})
