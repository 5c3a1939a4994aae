"""What the API shows and accepts. No business rules here: writes go through wizard.services. Secrets are
never serialized (there is no field for secret_enc or password_enc)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..models import ApiToken, Cluster, Run, Server, ServiceIP, Step
from ..selectors import run_progress
from ..services.tokens import MAX_DAYS


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


class RunCreateSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=Run.Kind.choices)
    target = serializers.CharField(required=False, allow_blank=True, max_length=63, default="",
                                   help_text="the node of maintenance-on/off; the new master of a handover")
    confirm = serializers.BooleanField(required=False, default=False,
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


class TokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    read_only = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]
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
