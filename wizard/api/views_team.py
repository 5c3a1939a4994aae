"""API views for what surrounds the clusters: host keys, CARP events, notices, the audit log, notification
targets and users. The pages' forms validate (the same sentences), the services act."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404  # a bad id is a 404, not a ValueError
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..documents import form_errors
from ..forms import NotificationTargetForm, UserCreateForm
from ..models import AuditEntry, CarpEvent, Cluster, Notice, NotificationTarget
from ..roles import Role
from ..views_audit import export_csv, export_json
from . import serializers as s
from .views import ById, NewestFirst, filters, refused


def form_or_400(form: Any) -> dict[str, Any]:
    """A page's form, judged: its cleaned data, or a field-keyed 400 with the page's sentences."""
    if not form.is_valid():
        raise exceptions.ValidationError(form_errors(form))
    return dict(form.cleaned_data)


class HostKeyViewSet(viewsets.ViewSet):
    """What each node of a cluster presents (nothing trusted), and pinning by fingerprint: the fingerprint must come
    back, so nothing is pinned blindly."""

    read_role = write_role = Role.ADMIN  # first contact over SSH, as the wizard's Review

    @extend_schema(responses={200: s.HostKeyOfferSerializer(many=True)})
    def list(self, request: Request, cluster_pk: str) -> Response:
        cluster = get_object_or_404(Cluster, pk=cluster_pk)
        offers = services.host_keys_fetch(cluster=cluster)
        return Response(s.HostKeyOfferSerializer(offers, many=True).data)

    @extend_schema(request=s.HostKeyPinSerializer, responses={200: s.HostKeyPinnedSerializer})
    def create(self, request: Request, cluster_pk: str) -> Response:
        cluster = get_object_or_404(Cluster, pk=cluster_pk)
        given = s.HostKeyPinSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        ids = set(cluster.servers.values_list("pk", flat=True))
        confirmed = {p["server"]: p["fingerprint"] for p in given.validated_data["pins"]}
        unknown = sorted(set(confirmed) - ids)
        if unknown:
            raise exceptions.ValidationError({"pins": [f"Server {n} is not a server of {cluster.name}."
                                                       for n in unknown]})
        try:
            pinned = services.host_keys_pin(cluster=cluster, confirmed=confirmed, user=request.user,
                                            repin=given.validated_data["repin"])
        except services.ServiceError as e:
            return refused(e)
        return Response({"pinned": pinned})


@extend_schema_view(list=extend_schema(parameters=[s.EventFilterSerializer]))
class CarpEventViewSet(viewsets.ReadOnlyModelViewSet[CarpEvent]):
    """CARP transitions as the nodes logged them (manage.py carp_events), oldest first."""

    serializer_class = s.CarpEventSerializer
    queryset = CarpEvent.objects.all()  # the schema's id type; reads go through get_queryset
    pagination_class = ById

    def get_queryset(self) -> QuerySet[CarpEvent]:
        qs = CarpEvent.objects.all()
        if self.action != "list":
            return qs
        given = filters(self.request, s.EventFilterSerializer)
        if given["cluster"]:
            qs = qs.filter(cluster_id=given["cluster"])
        if given["since"]:
            qs = qs.filter(received__gte=given["since"])
        return qs


@extend_schema_view(list=extend_schema(parameters=[s.NoticeFilterSerializer]))
class NoticeViewSet(viewsets.ReadOnlyModelViewSet[Notice]):
    """Notices (one per cluster event) and how each delivery went, newest first."""

    serializer_class = s.NoticeSerializer
    queryset = Notice.objects.all()  # the schema's id type; reads go through get_queryset
    pagination_class = NewestFirst
    read_role = Role.OPERATOR  # as the Notifications page

    def get_queryset(self) -> QuerySet[Notice]:
        qs = Notice.objects.select_related("cluster").prefetch_related("deliveries__target")
        if self.action == "list":
            given = filters(self.request, s.NoticeFilterSerializer)
            if given["cluster"]:
                qs = qs.filter(cluster_id=given["cluster"])
        return qs


AUDIT_FILTERS = [s.AuditFilterSerializer]


def _audit_filters(request: Request) -> dict[str, Any]:
    return filters(request, s.AuditFilterSerializer)


@extend_schema_view(list=extend_schema(parameters=AUDIT_FILTERS))
class AuditViewSet(viewsets.ReadOnlyModelViewSet[AuditEntry]):
    """The audit log with the page's filters, newest first; `export/?as=csv|json` streams all of it, as the page."""

    serializer_class = s.AuditEntrySerializer
    queryset = AuditEntry.objects.all()  # the schema's id type; reads go through get_queryset
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[AuditEntry]:
        if self.action != "list":
            return AuditEntry.objects.all()
        return selectors.audit_entries(_audit_filters(self.request))

    @extend_schema(parameters=[*AUDIT_FILTERS, OpenApiParameter("as", str, enum=["csv", "json"])],
                   responses={(200, "text/csv"): OpenApiTypes.STR,
                              (200, "application/json"): s.AuditEntrySerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request: Request) -> StreamingHttpResponse:
        entries = selectors.audit_entries(_audit_filters(request))
        kind = request.query_params.get("as", "json")
        if kind not in ("csv", "json"):
            raise exceptions.ValidationError({"as": ["csv or json."]})
        return export_csv(entries) if kind == "csv" else export_json(entries)


class NotificationTargetViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                                viewsets.GenericViewSet[NotificationTarget]):
    """Where notices go (webhooks, email). A header's value is write-only."""

    serializer_class = s.NotificationTargetSerializer
    queryset = NotificationTarget.objects.select_related("cluster")
    pagination_class = ById
    read_role = Role.OPERATOR
    write_role = Role.ADMIN

    @extend_schema(request=s.NotificationTargetCreateSerializer, responses={201: s.NotificationTargetSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = s.NotificationTargetCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = form_or_400(NotificationTargetForm({**given.validated_data,
                                                   "cluster": given.validated_data.get("cluster") or ""}))
        target = services.target_add(address=data["address"], cluster=data["cluster"],
                                     header_name=data["header_name"], header_value=data["header_value"])
        return Response(s.NotificationTargetSerializer(target).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: NotificationTarget) -> None:
        services.target_delete(target=instance)


class UserViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                  viewsets.GenericViewSet[Any]):
    """People and their roles (admins only). PATCH changes a role or (de)activates; the last admin stays."""

    serializer_class = s.UserSerializer
    queryset = get_user_model().objects.order_by("username").prefetch_related("groups")
    pagination_class = ById
    read_role = write_role = Role.ADMIN

    @extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = s.UserCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = form_or_400(UserCreateForm(given.validated_data))
        user = services.user_create(username=data["username"], password=data["password"], role=Role(data["role"]))
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.UserChangeSerializer, responses={200: s.UserSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        given = s.UserChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            if given.validated_data.get("role"):
                user = services.user_set_role(actor=request.user, user_id=str(user.pk),
                                              role=given.validated_data["role"])
            if given.validated_data.get("active") is not None:
                user = services.user_set_active(actor=request.user, user_id=str(user.pk),
                                                active=given.validated_data["active"])
        except services.ServiceError as e:
            return refused(e)
        return Response(s.UserSerializer(user).data)

