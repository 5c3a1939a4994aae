"""Clusters and their servers, runs and their step rows. Secrets are stored encrypted (wizard.crypto)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Cluster(models.Model):
    name = models.CharField(max_length=63, unique=True)
    subnet = models.CharField(max_length=18, help_text="IPv4 network in CIDR form, e.g. 192.0.2.0/24")
    gateway = models.GenericIPAddressField(protocol="IPv4")
    vip = models.GenericIPAddressField(protocol="IPv4", verbose_name="service IP")
    vip_prefix = models.PositiveSmallIntegerField(default=32)
    vhid = models.PositiveSmallIntegerField(default=1)
    advbase = models.PositiveSmallIntegerField(default=1)
    interface = models.CharField(max_length=15, blank=True)
    carp_password_enc = models.TextField(blank=True)
    master_advskew = models.PositiveSmallIntegerField(default=0, help_text="advskew of the preferred master")
    configure_service_ip = models.BooleanField(default=True, help_text="the wizard's run also configures the VIP")
    diagnosis = models.TextField(blank=True, help_text="the last check's findings, one per line")
    checked_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(null=True, blank=True)
    service_ip_configured = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Server(models.Model):
    class Auth(models.TextChoices):
        KEY = "key", "Private key"
        PASSWORD = "password", "Password"

    class Role(models.TextChoices):
        NODE = "node", "CARP node"
        PROBE = "probe", "Probe only (measures the VIP during drills)"

    class Privilege(models.TextChoices):
        ROOT = "root", "root (log in as root)"
        SUDO = "sudo", "sudo -n"
        DOAS = "doas", "doas -n"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="servers")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=63)
    address = models.GenericIPAddressField(protocol="IPv4")
    ssh_host = models.CharField(max_length=253)
    ssh_port = models.PositiveIntegerField(default=22)
    ssh_user = models.CharField(max_length=32, default="root")
    auth = models.CharField(max_length=10, choices=Auth.choices, default=Auth.KEY)
    secret_enc = models.TextField(blank=True)
    privilege = models.CharField(max_length=10, choices=Privilege.choices, default=Privilege.ROOT)
    preferred_master = models.BooleanField(default=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.NODE)
    maintenance = models.BooleanField(default=False, help_text="demoted on purpose (demotion 240)")
    carp_state = models.CharField(max_length=10, blank=True)
    carp_advskew = models.SmallIntegerField(null=True, blank=True)
    demotion = models.IntegerField(null=True, blank=True)
    host_key = models.TextField(blank=True, help_text="pinned host key: 'type base64'")
    host_key_fingerprint = models.CharField(max_length=100, blank=True)
    host_key_pinned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cluster", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="unique_server_name_per_cluster")]

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    class Kind(models.TextChoices):
        SETUP = "setup", "Setup: preflight, prepare, verify (and configure)"
        PREFLIGHT = "preflight", "Preflight"
        PREPARE = "prepare", "Prepare"
        VERIFY = "verify", "Verify"
        CONFIGURE = "configure", "Configure service IP"
        CHECK = "check", "Check"
        DRILL = "drill", "Failover drill"
        MAINTENANCE_ON = "maintenance-on", "Maintenance on"
        MAINTENANCE_OFF = "maintenance-off", "Maintenance off"
        REMOVE = "remove", "Remove service IP"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    target = models.ForeignKey("Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="the node of a maintenance run")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_name = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["cluster", "status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def done(self) -> bool:
        return self.status in (self.Status.OK, self.Status.FAILED, self.Status.INTERRUPTED)


class Step(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        CHANGED = "changed", "Changed"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    server = models.ForeignKey(Server, null=True, on_delete=models.SET_NULL, related_name="steps")
    server_name = models.CharField(max_length=63)
    position = models.PositiveSmallIntegerField()
    phase = models.CharField(max_length=20)
    name = models.CharField(max_length=40)
    title = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    command = models.TextField(blank=True, help_text="the commands sent, secrets masked")
    exit_code = models.IntegerField(null=True, blank=True)
    stdout_tail = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="bumped on every change; the page polls by it")

    class Meta:
        ordering = ["run", "server_name", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "server_name", "position"], name="unique_step")]

    def __str__(self) -> str:
        return f"{self.server_name} {self.name}: {self.status}"

    @property
    def duration_ms(self) -> int | None:
        if self.started and self.finished:
            return int((self.finished - self.started).total_seconds() * 1000)
        return None


class Drill(models.Model):
    """One failover rehearsal: what a client saw, against CARP's bound."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="drills")
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="drills")
    started = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, default="running")  # running, ok, failed
    master_before = models.CharField(max_length=63, blank=True)
    master_during = models.CharField(max_length=63, blank=True)
    probe = models.CharField(max_length=63, blank=True)
    takeover_s = models.FloatField(null=True, blank=True)
    outage_s = models.FloatField(null=True, blank=True)
    bound_s = models.FloatField(null=True, blank=True)
    failback_ok = models.BooleanField(null=True, blank=True)
    demoted = models.ForeignKey(Server, null=True, on_delete=models.SET_NULL, related_name="+")
    demotion_pending = models.BooleanField(default=False, help_text="demoted and not yet restored")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"drill {self.pk} on {self.cluster}: {self.status}"


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: object) -> int:
        raise PermissionError("the audit log is append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("the audit log is append-only")


class AuditEntry(models.Model):
    """One change or event. Append-only; each entry's hash covers its content and the previous entry's hash."""

    ts = models.DateTimeField(db_index=True)
    # No database constraint: deleting a user must not touch the log; actor_name keeps who it was.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    actor_name = models.CharField(max_length=150, db_index=True)
    request_id = models.CharField(max_length=32, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    cluster_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    cluster_name = models.CharField(max_length=63, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    link = models.CharField(max_length=200, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["action", "ts"]), models.Index(fields=["cluster_name", "ts"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise PermissionError("the audit log is append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionError("the audit log is append-only")
