"""/api/v1/ and the OpenAPI document. The login-required middleware is the pages' rule: the API answers 401
itself, so its views are marked login_not_required."""

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from . import views, views_team

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("clusters", views.ClusterViewSet, basename="api-cluster")
router.register("runs", views.RunViewSet, basename="api-run")
router.register("tokens", views.TokenViewSet, basename="api-token")
router.register("events", views_team.CarpEventViewSet, basename="api-event")
router.register("notices", views_team.NoticeViewSet, basename="api-notice")
router.register("audit", views_team.AuditViewSet, basename="api-audit")
router.register("notification-targets", views_team.NotificationTargetViewSet, basename="api-notification-target")
router.register("users", views_team.UserViewSet, basename="api-user")


def _open(patterns: list[Any]) -> list[URLPattern | URLResolver]:
    for p in patterns:
        if isinstance(p, URLPattern):
            p.callback = login_not_required(p.callback)
    return patterns


urlpatterns = _open([
    path("v1/health/", views.health, name="api-health"),
    path("v1/clusters/<int:cluster_pk>/host-keys/",
         views_team.HostKeyViewSet.as_view({"get": "list", "post": "create"}), name="api-host-keys"),
    path("v1/", include(_open(list(router.urls)))),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<rest>[\s\S]*)$", views.not_found),
])
