"""API views: thin, like the pages'. They check the role, call a service or a selector, and serialize.

Roles are global in carpweb (every viewer may read every cluster), so a role that may not do something gets 403
with the reason: there is no object whose existence a 404 would need to hide. Unknown ids get 404.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, pagination, serializers, status, viewsets
from rest_framework.decorators import action, api_view, authentication_classes, permission_classes
from rest_framework.generics import get_object_or_404  # a bad id is a 404, not a ValueError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..documents import DocumentInvalid, cluster_document_save
from ..execution.waits import until
from ..health import health_check
from ..models import ApiToken, Cluster, Run
from ..roles import Role, has_role
from ..services import tokens
from .serializers import (
    ClusterDocumentSerializer,
    ClusterFilterSerializer,
    ClusterSerializer,
    RunCreateSerializer,
    RunDetailSerializer,
    RunFilterSerializer,
    RunSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)

WAIT_MAX = 60  # seconds a ?wait= long-poll may hold a request


class ById(pagination.CursorPagination):
    ordering = "id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        """`limit`, checked: 1 to 200, or a field-keyed 400 (not silently the default)."""
        given = request.query_params.get(self.page_size_query_param or "limit")
        if given is None:
            return self.page_size
        if not given.isdigit() or not 1 <= int(given) <= self.max_page_size:
            raise serializers.ValidationError({"limit": [f"A whole number from 1 to {self.max_page_size}."]})
        return int(given)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for p in parameters:
            if p["name"] == self.page_size_query_param:
                p["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


class NewestFirst(ById):
    ordering = "-id"


def refused(error: services.ServiceError) -> Response:
    """A service's refusal: its sentence, 403 when the role is the reason."""
    code = status.HTTP_403_FORBIDDEN if isinstance(error, services.RoleRequired) else status.HTTP_400_BAD_REQUEST
    return Response({"detail": str(error)}, status=code)


@extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT}, auth=[])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def health(request: Request) -> Response:
    """200 when the database, the broker and a worker answer; 503 otherwise (the same as GET /health/)."""
    result = health_check()
    return Response(result.as_public_dict(), status=200 if result.healthy else 503)


def filters[T: serializers.Serializer[Any]](request: Request, kind: type[T]) -> dict[str, Any]:
    """The query's filters, validated (a wrong one is a field-keyed 400)."""
    given = kind(data=request.query_params.dict())  # a plain dict: an empty value is judged, not dropped
    given.is_valid(raise_exception=True)
    return dict(given.validated_data)


def etag(cluster: Cluster) -> str:
    return f'"{cluster.version}"'


def if_match(request: Request, cluster: Cluster) -> int | None:
    """The version an If-Match header names (None without one); 412 when it is not the current one."""
    given = request.headers.get("If-Match", "").strip()
    if not given or given == "*":
        return None
    wanted = given.removeprefix("W/").strip('"')
    if not wanted.isdigit() or int(wanted) != cluster.version:
        raise PreconditionFailed(f"{cluster.name} changed since you read it (its ETag is now {etag(cluster)}): "
                                 "read it again, then make your change.")
    return int(wanted)


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The object changed since you read it."


def saved(cluster: Cluster, code: int) -> Response:
    cluster = selectors.cluster_inventory().get(pk=cluster.pk)
    return Response(ClusterSerializer(cluster).data, status=code, headers={"ETag": etag(cluster)})


IF_MATCH = OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, required=False,
                            description="the ETag of your last read: a stale one gets 412")


@extend_schema_view(list=extend_schema(parameters=[ClusterFilterSerializer]))
class ClusterViewSet(viewsets.ReadOnlyModelViewSet[Cluster]):
    """The inventory: clusters with their nodes and service IPs. Writes take the whole cluster document (the
    shape cluster_import reads) and are judged by the wizard's forms; ETag/If-Match guard against lost updates."""

    serializer_class = ClusterSerializer
    queryset = Cluster.objects.all()  # the schema's id type; reads go through get_queryset
    action_roles = {"create": Role.ADMIN, "update": Role.ADMIN, "destroy": Role.ADMIN}

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cluster = self.get_object()
        return Response(self.get_serializer(cluster).data, headers={"ETag": etag(cluster)})

    def _save(self, request: Request, cluster: Cluster | None) -> Response:
        shape = ClusterDocumentSerializer(data=request.data)
        shape.is_valid(raise_exception=True)
        expected = if_match(request, cluster) if cluster else None
        try:
            saved_cluster = cluster_document_save(request.data, cluster=cluster, expected_version=expected)
        except DocumentInvalid as e:
            raise exceptions.ValidationError(e.errors) from None
        except services.ConcurrentEdit as e:
            raise PreconditionFailed(str(e)) from None
        except services.ServiceError as e:
            return refused(e)
        return saved(saved_cluster, status.HTTP_201_CREATED if cluster is None else status.HTTP_200_OK)

    @extend_schema(request=ClusterDocumentSerializer, responses={201: ClusterSerializer})
    def create(self, request: Request) -> Response:
        """Create a cluster from its document (servers and service IPs included)."""
        return self._save(request, None)

    @extend_schema(request=ClusterDocumentSerializer, responses={200: ClusterSerializer, 412: OpenApiTypes.OBJECT},
                   parameters=[IF_MATCH])
    def update(self, request: Request, pk: str | None = None) -> Response:
        """Replace a cluster's settings, servers and service IPs (empty secrets keep the stored ones)."""
        return self._save(request, get_object_or_404(Cluster, pk=pk))

    @extend_schema(responses={204: None, 412: OpenApiTypes.OBJECT}, parameters=[IF_MATCH])
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete the cluster from carpweb (nothing on the nodes changes: run Remove first for that)."""
        cluster = get_object_or_404(Cluster, pk=pk)
        if_match(request, cluster)
        services.cluster_delete(cluster=cluster)
        return Response(status=status.HTTP_204_NO_CONTENT)
    pagination_class = ById

    def get_queryset(self) -> QuerySet[Cluster]:
        if self.action != "list":
            return Cluster.objects.all()
        given = filters(self.request, ClusterFilterSerializer)
        qs = selectors.cluster_inventory(q=(given["address"] or given["q"]).strip(), state=given["state"])
        return qs.filter(name=given["name"]) if given["name"] else qs

    @extend_schema(request=RunCreateSerializer, responses={201: RunSerializer, 400: OpenApiTypes.OBJECT,
                                                           403: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="runs")
    def runs(self, request: Request, pk: str | None = None) -> Response:
        """Start a run (any kind the caller's role allows); 201 with the run, which the worker then executes."""
        cluster = get_object_or_404(Cluster, pk=pk)
        given = RunCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            run = services.run_start(cluster=cluster, kind=given.validated_data["kind"], user=request.user,
                                     target=given.validated_data["target"] or given.validated_data["to"],
                                     confirm=given.validated_data["confirm"],
                                     service_ip=given.validated_data["service_ip"])
        except services.ServiceError as e:
            return refused(e)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(parameters=[RunFilterSerializer]))
class RunViewSet(viewsets.ReadOnlyModelViewSet[Run]):
    """Runs, newest first; one run with its step rows, optionally waiting for it to end."""

    queryset = Run.objects.all()  # the schema's id type; reads go through get_queryset
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Run]:
        qs = Run.objects.select_related("target")
        if self.action != "list":
            return qs
        given = filters(self.request, RunFilterSerializer)
        if given["cluster"]:
            qs = qs.filter(cluster_id=given["cluster"])
        return qs.filter(**{name: given[name] for name in ("status", "kind") if given[name]})

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Run]]:
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    @extend_schema(parameters=[OpenApiParameter("wait", int, description=f"seconds (at most {WAIT_MAX}) to wait "
                                                "for the run to end before answering")])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        wait = request.query_params.get("wait", "")
        if wait.isdigit() and int(wait) > 0 and not run.done:
            def ended() -> bool:
                run.refresh_from_db(fields=["status"])
                return run.done

            until(ended, seconds=min(int(wait), WAIT_MAX), every=0.25, stop=threading.Event())
            run = self.get_object()
        return Response(RunDetailSerializer(run).data)


class TokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet[ApiToken]):
    """Your API tokens (an admin sees everyone's). Creating answers the token once; deleting revokes it."""

    serializer_class = TokenSerializer
    queryset = ApiToken.objects.all()  # narrowed per person in get_queryset
    pagination_class = NewestFirst
    lookup_field = "key_id"
    lookup_value_regex = "[0-9a-f]{1,16}"
    write_role = Role.VIEWER  # anyone may hold tokens for their own role

    def get_queryset(self) -> QuerySet[ApiToken]:
        qs = ApiToken.objects.select_related("user")
        return qs if has_role(self.request.user, Role.ADMIN) else qs.filter(user_id=self.request.user.pk or 0)

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        given = TokenCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            token, text = tokens.token_create(user=request.user, name=given.validated_data.get("name", ""),
                                              read_only=given.validated_data["read_only"],
                                              expires_days=given.validated_data.get("expires_days"),
                                              actor=request.user)
        except services.ServiceError as e:
            return refused(e)
        return Response({"token": text, "key_id": token.key_id}, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = self.get_object()
        try:
            tokens.token_revoke(key_id=token.key_id, actor=request.user)
        except services.ServiceError as e:
            return refused(e)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
def not_found(request: Request, rest: str = "") -> Response:
    """Any other path under /api/: a JSON 404, not the pages' HTML one."""
    return Response({"detail": "No such API path."}, status=status.HTTP_404_NOT_FOUND)


def bad_request(request: Any, exception: Exception) -> Any:
    """Django's 400 (a bad Host header, a broken request) in JSON under /api/, the default page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import bad_request as page

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return page(request, exception)
