"""The Notifications page: where cluster events go (webhooks, email), and how their deliveries went."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import selectors, services
from .forms import NotificationTargetForm
from .models import NotificationTarget
from .roles import Role, require_role


@require_http_methods(["GET", "POST"])
def notification_list(request: HttpRequest) -> HttpResponse:
    """Operators read the page; adding a target (its POST) is the admins' (a 403 for others, as elsewhere)."""
    return notification_add(request) if request.method == "POST" else notification_page(request)


@require_role(Role.OPERATOR)
def notification_page(request: HttpRequest, form: NotificationTargetForm | None = None) -> HttpResponse:
    return render(request, "wizard/notifications.html",
                  {"form": form or NotificationTargetForm(), **selectors.notifications_page()})


@require_role(Role.ADMIN)
def notification_add(request: HttpRequest) -> HttpResponse:
    form = NotificationTargetForm(request.POST)
    if not form.is_valid():
        return notification_page(request, form)
    target = services.target_add(address=form.cleaned_data["address"], cluster=form.cleaned_data["cluster"],
                                 header_name=form.cleaned_data["header_name"],
                                 header_value=form.cleaned_data["header_value"])
    messages.success(request, f"Cluster events now go to {target.shown}.")
    return redirect("notification-list")


@require_POST
@require_role(Role.ADMIN)
def notification_delete(request: HttpRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(NotificationTarget, pk=pk)
    services.target_delete(target=target)
    messages.success(request, f"Cluster events no longer go to {target.shown}.")
    return redirect("notification-list")
