"""People and their access: user accounts and roles (admins), one's own password and API tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services
from .forms import TokenCreateForm, UserCreateForm
from .models import ApiToken
from .roles import ROLES, Role, require_role, role_of
from .services import tokens


@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Anyone logged in chooses their own password (Django's validators); required at a first login."""
    form = PasswordChangeForm(request.user, request.POST or None)  # type: ignore[arg-type]  # logged in
    if request.method == "POST" and form.is_valid():
        services.password_change(request=request, user=request.user, password=form.cleaned_data["new_password1"])
        messages.success(request, "Your password is changed.")
        return redirect("cluster-list")
    return render(request, "wizard/password_change.html",
                  {"form": form, "forced": services.must_change_password(request.user)})


@require_role(Role.VIEWER)
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """One's own API tokens: made here (shown once, on this answer only), listed with their last use, revoked."""
    form = TokenCreateForm(request.POST if request.POST.get("action") == "create" else None)
    shown = ""
    if request.method == "POST" and request.POST.get("action") == "revoke":
        try:
            token = tokens.token_revoke(key_id=str(request.POST.get("key_id", "")), actor=request.user)
        except services.ServiceError as e:
            messages.error(request, str(e))
        else:
            messages.success(request, f"Token {token.key_id} is revoked: its next request gets 401.")
        return redirect("token-list")
    if form.is_bound and form.is_valid():
        try:
            _, shown = tokens.token_create(user=request.user, name=form.cleaned_data["name"],
                                           read_only=form.cleaned_data["read_only"],
                                           expires_days=form.cleaned_data["expires_days"], actor=request.user)
        except services.ServiceError as e:
            messages.error(request, str(e))
        form = TokenCreateForm()
    response = render(request, "wizard/token_list.html", {
        "form": form, "shown": shown, "tokens": ApiToken.objects.filter(user_id=request.user.pk or 0)})
    response["Cache-Control"] = "no-store"  # the page that shows a new token once is never kept by a cache
    return response


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def user_list(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action")
    form = UserCreateForm(request.POST if action == "create" else None)
    if action == "create" and form.is_valid():
        user = services.user_create(username=form.cleaned_data["username"], password=form.cleaned_data["password"],
                                    role=Role(form.cleaned_data["role"]))
        messages.success(request, f"Created {user.username} as {form.cleaned_data['role']}.")
        return redirect("user-list")
    if action in ("role", "deactivate", "reactivate"):
        user_id = str(request.POST.get("user", ""))
        try:
            if action == "role":
                target = services.user_set_role(actor=request.user, user_id=user_id,
                                                role=str(request.POST.get("role", "")))
                messages.success(request, f"{target.username} is now {request.POST.get('role')}.")
            else:
                target = services.user_set_active(actor=request.user, user_id=user_id, active=action == "reactivate")
                messages.success(request, f"{target.username} is {action}d." if action == "reactivate" else
                                 f"{target.username} is deactivated: no login, and open pages stop following.")
        except services.ServiceError as e:
            messages.error(request, str(e))
        return redirect("user-list")
    users = [(u, role_of(u)) for u in get_user_model().objects.order_by("username").prefetch_related("groups")]
    return render(request, "wizard/user_list.html", {"users": users, "form": form, "roles": ROLES})
