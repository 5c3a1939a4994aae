"""Top-level URLs: auth, admin, and the wizard app."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from wizard import views_health

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("metrics", views_health.metrics, name="metrics"),
    path("api/", include("wizard.api.urls")),
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (JSON, the admin's error pages).
    path("favicon.ico", login_not_required(RedirectView.as_view(url=static("favicon.svg"), permanent=True))),
    path("", include("wizard.urls")),
]

handler400 = "wizard.api.views.bad_request"
