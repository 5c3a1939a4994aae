"""What the API shows and accepts. No business rules here: writes go through wizard.services. Secrets are
never serialized (there is no field for secret_enc or password_enc)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import (
    ApiToken,
    AuditEntry,
    CarpEvent,
    Cluster,
    Delivery,
    Notice,
    NotificationTarget,
    Run,
    Server,
    ServiceIP,
    Step,
)
from ..selectors import run_progress
from ..services.tokens import MAX_DAYS


class StrictBoolean(serializers.BooleanField):
    """true or false, nothing else: DRF's own also takes 0, 1, "yes"... which the schema does not promise."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        return False  # not reached: fail raises


def _whole(value: Any) -> bool:
    """A JSON integer: 5 or 5.0 (JSON Schema's integer), not true, "5" or 5.5."""
    return not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, float) and value.is_integer())


class JsonBody(serializers.Serializer[Any]):
    """A request body judged by JSON's own types first: DRF would read 0 as "0" for a text field, "5" or 5.0 as 5
    for a number, which the schema does not promise."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            wrong: dict[str, list[str]] = {}
            for name, field in self.fields.items():
                value = data.get(name)
                if value is None or field.read_only:
                    continue
                if isinstance(field, serializers.ChoiceField | serializers.CharField) and not isinstance(value, str):
                    wrong[name] = ["Not a string."]
                elif isinstance(field, serializers.IntegerField) and not _whole(value):
                    wrong[name] = ["Not a whole number."]
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


class ServiceIPSerializer(serializers.ModelSerializer[ServiceIP]):
    master = serializers.CharField(read_only=True, help_text="its MASTER at the last Check ('split' for several)")

    class Meta:
        model = ServiceIP
        fields = ["id", "interface", "vhid", "addresses", "advbase", "announce", "configured", "state", "master"]
        read_only_fields = fields


class ServerSerializer(serializers.ModelSerializer[Server]):
    host_key_pinned = serializers.SerializerMethodField()

    class Meta:
        model = Server
        fields = ["id", "name", "role", "address", "address6", "ssh_host", "ssh_port", "ssh_user", "auth",
                  "privilege", "preferred_master", "maintenance", "carp_state", "host_key_fingerprint",
                  "host_key_pinned", "freebsd_release"]
        read_only_fields = fields

    def get_host_key_pinned(self, obj: Server) -> bool:
        return bool(obj.host_key)


def cluster_state(cluster: Cluster) -> str:
    return "never" if cluster.healthy is None else "healthy" if cluster.healthy else "degraded"


class ClusterSerializer(serializers.ModelSerializer[Cluster]):
    state = serializers.SerializerMethodField(help_text="healthy, degraded or never (verified)")
    servers = ServerSerializer(many=True, read_only=True)
    service_ips = ServiceIPSerializer(many=True, read_only=True)

    class Meta:
        model = Cluster
        fields = ["id", "name", "state", "subnet", "gateway", "interface", "subnet6", "master_advskew",
                  "configure_service_ip", "healthy", "diagnosis", "checked_at", "service_ip_configured", "version",
                  "created", "updated", "servers", "service_ips"]
        read_only_fields = fields

    def get_state(self, obj: Cluster) -> str:
        return cluster_state(obj)


class StepSerializer(serializers.ModelSerializer[Step]):
    class Meta:
        model = Step
        fields = ["server_name", "cluster_wide", "position", "phase", "name", "title", "status", "message",
                  "command", "exit_code", "stdout_tail", "stderr_tail", "started", "finished"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer[Run]):
    target: serializers.SlugRelatedField[Server] = serializers.SlugRelatedField(slug_field="name", read_only=True,
                                                                                allow_null=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "cluster", "kind", "status", "trigger", "target", "service_ip", "created_by_name",
                  "created", "started", "finished", "summary", "progress"]
        read_only_fields = fields

    def get_progress(self, obj: Run) -> dict[str, int]:
        done, total = run_progress(obj)
        return {"done": done, "total": total}


class RunDetailSerializer(RunSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps"]
        read_only_fields = fields


class RunCreateSerializer(JsonBody):
    kind = serializers.ChoiceField(choices=Run.Kind.choices)
    target = serializers.CharField(required=False, allow_blank=True, max_length=63, default="",
                                   help_text="the node of maintenance-on/off; the new master of a handover")
    to = serializers.CharField(required=False, allow_blank=True, max_length=63, default="",
                               help_text="the same as target, for a handover (as carp_run's --to)")
    confirm = StrictBoolean(required=False, default=False,
                                       help_text="maintenance of the last node not in maintenance")
    service_ip = serializers.IntegerField(required=False, allow_null=True, default=None,
                                          help_text="Remove of one service IP (its id)")


class TokenSerializer(serializers.ModelSerializer[ApiToken]):
    user: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["key_id", "user", "name", "read_only", "created", "expires", "revoked", "last_used",
                  "last_used_ip"]
        read_only_fields = fields


class TokenCreateSerializer(JsonBody):
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    read_only = StrictBoolean(required=False, default=False)  # type: ignore[assignment]
    expires_days = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_DAYS,
                                            default=None)


class TokenCreatedSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="carpweb_<id>_<secret>: shown this once, kept only as a keyed hash")
    key_id = serializers.CharField()


class ClusterFilterSerializer(serializers.Serializer[Any]):
    """The inventory's filters, checked: a wrong one is a field-keyed 400, not an ignored word."""

    q = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=63, default="")
    address = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    state = serializers.ChoiceField(required=False, allow_blank=True, default="",
                                    choices=["healthy", "degraded", "never"])


class RunFilterSerializer(serializers.Serializer[Any]):
    cluster = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    status = serializers.ChoiceField(required=False, allow_blank=True, default="", choices=Run.Status.choices)
    kind = serializers.ChoiceField(required=False, allow_blank=True, default="", choices=Run.Kind.choices)


class ServerDocumentSerializer(JsonBody):
    """A server as a cluster document sends it (the wizard's Servers step). Secrets are write-only: empty keeps
    the stored one."""

    name = serializers.CharField(max_length=63)
    address = serializers.CharField(max_length=45, help_text="its IPv4 address on the nodes' interface")
    address6 = serializers.CharField(max_length=45, required=False, allow_blank=True, allow_null=True)
    ssh_host = serializers.CharField(max_length=253)
    ssh_port = serializers.IntegerField(required=False, default=22, min_value=1, max_value=65535)
    ssh_user = serializers.CharField(max_length=32, required=False, default="root")
    ssh_key = serializers.CharField(required=False, allow_blank=True, write_only=True,
                                    help_text="an OpenSSH private key (write-only)")
    ssh_password = serializers.CharField(required=False, allow_blank=True, write_only=True,
                                         help_text="instead of a key (write-only)")
    privilege = serializers.ChoiceField(choices=Server.Privilege.choices, required=False, default="root")
    preferred_master = StrictBoolean(required=False, default=False)
    role = serializers.ChoiceField(choices=Server.Role.choices, required=False, default="node")


class ServiceIPDocumentSerializer(JsonBody):
    interface = serializers.CharField(max_length=15, required=False, allow_blank=True)
    vhid = serializers.IntegerField(min_value=1, max_value=255)
    addresses = serializers.ListField(child=serializers.CharField(max_length=50), min_length=1, max_length=64)
    advbase = serializers.IntegerField(required=False, default=1, min_value=1, max_value=255)
    password = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=19,
                                     help_text="the CARP key (write-only; empty: generated, or kept)")
    unicast = StrictBoolean(required=False, default=False)


class ClusterDocumentSerializer(JsonBody):
    """A whole cluster, as cluster_import reads it. The wizard's forms judge it (wizard.documents); this only
    describes the shape and checks the types."""

    name = serializers.CharField(max_length=63)
    subnet = serializers.CharField(max_length=18)
    gateway = serializers.CharField(max_length=45)
    subnet6 = serializers.CharField(max_length=43, required=False, allow_blank=True)
    interface = serializers.CharField(max_length=15, required=False, allow_blank=True)
    master_advskew = serializers.IntegerField(required=False, default=0, min_value=0, max_value=254)
    configure_service_ip = StrictBoolean(required=False, default=True)
    servers = ServerDocumentSerializer(many=True)
    service_ips = ServiceIPDocumentSerializer(many=True)


class HostKeyOfferSerializer(serializers.Serializer[Any]):
    server = serializers.IntegerField(source="server.pk")
    server_name = serializers.CharField(source="server.name")
    key_type = serializers.CharField()
    fingerprint = serializers.CharField(help_text="SHA256:…, what to compare and send back to pin")
    pinned_fingerprint = serializers.CharField(source="server.host_key_fingerprint")
    matches_pin = StrictBoolean()
    error = serializers.CharField()


class HostKeyPinItemSerializer(JsonBody):
    server = serializers.IntegerField(min_value=1)
    fingerprint = serializers.RegexField(r"^SHA256:[A-Za-z0-9+/]{43}$", max_length=50)


class HostKeyPinSerializer(JsonBody):
    pins = HostKeyPinItemSerializer(many=True, allow_empty=False)
    repin = StrictBoolean(required=False, default=False,
                                     help_text="replace a different pinned key (a changed host key)")


class HostKeyPinnedSerializer(serializers.Serializer[Any]):
    pinned = serializers.ListField(child=serializers.CharField(), help_text="the servers whose key was pinned now")


class EventFilterSerializer(serializers.Serializer[Any]):
    cluster = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    since = serializers.DateTimeField(required=False, allow_null=True, default=None)


class CarpEventSerializer(serializers.ModelSerializer[CarpEvent]):
    class Meta:
        model = CarpEvent
        fields = ["id", "cluster", "node", "vhid", "interface", "old_state", "new_state", "reason", "node_time",
                  "received"]
        read_only_fields = fields


class NoticeFilterSerializer(serializers.Serializer[Any]):
    cluster = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    target = serializers.CharField(source="target.shown", help_text="the address, a webhook's token cut off")

    class Meta:
        model = Delivery
        fields = ["target", "status", "attempts", "last_error", "updated"]
        read_only_fields = fields


class NoticeSerializer(serializers.ModelSerializer[Notice]):
    deliveries = DeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Notice
        fields = ["id", "cluster", "kind", "node", "vhid", "old_state", "new_state", "reason", "time", "created",
                  "deliveries"]
        read_only_fields = fields


@extend_schema_field({"type": ["object", "null"], "additionalProperties": True})
class NullableObject(serializers.JSONField):
    """A JSON object or null (drf-spectacular's default for a nullable JSONField matches null twice)."""


class AuditEntrySerializer(serializers.ModelSerializer[AuditEntry]):
    before = NullableObject(read_only=True)
    after = NullableObject(read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "ts", "actor_name", "token_id", "request_id", "source_ip", "action", "object_type",
                  "object_id", "object_repr", "cluster_name", "before", "after", "link", "prev_hash", "hash"]
        read_only_fields = fields


class NotificationTargetSerializer(serializers.ModelSerializer[NotificationTarget]):
    address = serializers.CharField(source="shown", read_only=True, help_text="a webhook's token cut off")
    header_name = serializers.CharField(read_only=True)

    class Meta:
        model = NotificationTarget
        fields = ["id", "kind", "address", "cluster", "header_name", "enabled", "created"]
        read_only_fields = fields


class NotificationTargetCreateSerializer(JsonBody):
    address = serializers.CharField(max_length=500, help_text="https://… or someone@example.org")
    cluster = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                       help_text="one cluster's events only (empty: every cluster)")
    header_name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    header_value = serializers.CharField(required=False, allow_blank=True, max_length=500, default="",
                                         write_only=True, help_text="stored encrypted, never shown again")


class UserSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    role = serializers.SerializerMethodField()
    is_active = StrictBoolean(read_only=True)
    last_login = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_role(self, obj: Any) -> str | None:
        from ..roles import role_of

        role = role_of(obj) if obj.is_active else None
        return str(role) if role else None


class UserCreateSerializer(JsonBody):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, max_length=200)
    role = serializers.ChoiceField(choices=["viewer", "operator", "admin"])


class UserChangeSerializer(JsonBody):
    role = serializers.ChoiceField(choices=["viewer", "operator", "admin"], required=False)
    active = StrictBoolean(required=False, allow_null=True, default=None)


class AuditFilterSerializer(serializers.Serializer[Any]):
    """The audit page's filters (AuditFilterForm), strict: a date is YYYY-MM-DD or absent."""

    user = serializers.CharField(required=False, max_length=150, trim_whitespace=False)
    cluster = serializers.CharField(required=False, max_length=63, trim_whitespace=False)
    action = serializers.CharField(required=False, max_length=40, trim_whitespace=False)
    since = serializers.DateField(required=False)
    until = serializers.DateField(required=False)
