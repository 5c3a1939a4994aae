"""/api/v1/ and the OpenAPI document. The login-required middleware is the pages' rule: the API answers 401
itself, so its views are marked login_not_required."""

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("clusters", views.ClusterViewSet, basename="api-cluster")
router.register("runs", views.RunViewSet, basename="api-run")
router.register("tokens", views.TokenViewSet, basename="api-token")


def _open(patterns: list[Any]) -> list[URLPattern | URLResolver]:
    for p in patterns:
        if isinstance(p, URLPattern):
            p.callback = login_not_required(p.callback)
    return patterns


urlpatterns = _open([
    path("v1/health/", views.health, name="api-health"),
    path("v1/", include(_open(list(router.urls)))),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<rest>[\s\S]*)$", views.not_found),
])
