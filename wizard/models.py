"""Clusters and their servers, runs and their step rows. Secrets are stored encrypted (wizard.crypto)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Revision(models.Model):
    """One row: the global revision counter. Every change pushed to pages takes the next value, in the same
    transaction (wizard.revisions), so revisions commit in order and a stream resumes after the last it sent."""

    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"revision {self.n}"


class Account(models.Model):
    """What carpweb keeps about a person beyond Django's user: whether they must choose their own password."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    must_change_password = models.BooleanField(default=False, help_text="set by an admin; cleared when the person "
                                               "chooses their own")

    def __str__(self) -> str:
        return f"account of user {self.user_id}"


class Cluster(models.Model):
    name = models.CharField(max_length=63, unique=True)
    subnet = models.CharField(max_length=18, help_text="the nodes' IPv4 network in CIDR form, e.g. 192.0.2.0/24")
    gateway = models.GenericIPAddressField(protocol="IPv4")
    interface = models.CharField(max_length=15, blank=True, help_text="the interface of the nodes' own addresses")
    subnet6 = models.CharField(max_length=43, blank=True, help_text="the nodes' IPv6 prefix, e.g. 2001:db8::/64")
    master_advskew = models.PositiveSmallIntegerField(default=0, help_text="advskew of the preferred master")
    configure_service_ip = models.BooleanField(default=True, help_text="the wizard's run also configures the VIP")
    diagnosis = models.TextField(blank=True, help_text="the last check's findings, one per line")
    checked_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(null=True, blank=True)
    service_ip_configured = models.BooleanField(default=False, help_text="Configure succeeded for its service IPs")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)
    rev = models.BigIntegerField(default=0, db_index=True, help_text="revision of the last change pages show")
    last_transition_at = models.DateTimeField(null=True, blank=True, help_text="the latest CARP transition seen")
    situation = models.CharField(max_length=20, blank=True, help_text="what was last notified: master:NAME, "
                                 "split, none")
    events_judged = models.BigIntegerField(default=0, help_text="the last CARP event the collector's judgement read")
    flapping = models.BooleanField(default=False, help_text="notices are grouped until the cluster calms down")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ServiceIP(models.Model):
    """One vhid on one interface with its addresses (IPv4 and/or IPv6): what FreeBSD calls a CARP address set.
    A cluster (its nodes) carries any number; demotion, preempt and maintenance stay node-wide."""

    class Announce(models.TextChoices):
        MULTICAST = "multicast", "Multicast (224.0.0.18 / ff02::12)"
        UNICAST = "unicast", "Unicast to the other nodes (FreeBSD 14.0+)"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="service_ips")
    position = models.PositiveSmallIntegerField(default=0)
    interface = models.CharField(max_length=15, blank=True, help_text="empty until the nodes' interface is chosen")
    vhid = models.PositiveSmallIntegerField()
    addresses = models.JSONField(default=list, help_text='["192.0.2.100/32", "2001:db8::100/64"]')
    advbase = models.PositiveSmallIntegerField(default=1)
    password_enc = models.TextField(blank=True)
    announce = models.CharField(max_length=10, choices=Announce.choices, default=Announce.MULTICAST)
    configured = models.BooleanField(default=False, help_text="Configure put it on every node")
    state = models.CharField(max_length=200, blank=True, help_text="the last check's per-node states")
    search = models.CharField(max_length=900, blank=True, db_index=True,
                              help_text="' ADDR ADDR ': what the inventory's search matches (kept by save)")

    class Meta:
        ordering = ["cluster", "position", "id"]
        verbose_name = "service IP"
        constraints = [models.UniqueConstraint(fields=["cluster", "interface", "vhid"],
                                               name="unique_vhid_per_interface")]

    def __str__(self) -> str:
        return f"vhid {self.vhid} on {self.interface}: {', '.join(self.addresses)}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.search = " " + " ".join(self.hosts) + " "
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "search"}
        super().save(*args, **kwargs)

    @property
    def unicast(self) -> bool:
        return self.announce == self.Announce.UNICAST

    @property
    def hosts(self) -> list[str]:
        """The addresses without their prefix."""
        return [a.split("/")[0] for a in self.addresses]

    @property
    def master(self) -> str:
        """Its MASTER as the last Check saw it (several: "split"; none: "")."""
        masters = [part.rsplit(" ", 1)[0] for part in self.state.split(", ") if part.endswith(" MASTER")]
        return masters[0] if len(masters) == 1 else "split" if masters else ""


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
    address6 = models.GenericIPAddressField(protocol="IPv6", null=True, blank=True,
                                            help_text="its IPv6 address on the same interface, if any")
    ssh_host = models.CharField(max_length=253)
    ssh_port = models.PositiveIntegerField(default=22)
    ssh_user = models.CharField(max_length=32, default="root")
    auth = models.CharField(max_length=10, choices=Auth.choices, default=Auth.KEY)
    secret_enc = models.TextField(blank=True)
    privilege = models.CharField(max_length=10, choices=Privilege.choices, default=Privilege.ROOT)
    preferred_master = models.BooleanField(default=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.NODE)
    maintenance = models.BooleanField(default=False, help_text="demoted on purpose (demotion 240)")
    carp_state = models.CharField(max_length=16, blank=True, help_text="MASTER, BACKUP, INIT, unreachable")
    carp_advskew = models.SmallIntegerField(null=True, blank=True)
    demotion = models.IntegerField(null=True, blank=True)
    host_key = models.TextField(blank=True, help_text="pinned host key: 'type base64'")
    host_key_fingerprint = models.CharField(max_length=100, blank=True)
    host_key_pinned_at = models.DateTimeField(null=True, blank=True)
    # The collector's place in the node's CARP event log, and when it last heard from the node.
    events_epoch = models.CharField(max_length=32, blank=True)
    events_seq = models.BigIntegerField(default=0)
    events_heard_at = models.DateTimeField(null=True, blank=True)
    events_error = models.TextField(blank=True, help_text="why the collector cannot follow the node, if it cannot")
    freebsd_release = models.CharField(max_length=40, blank=True, help_text="uname -r, as discovery last read it")
    seen_vhids = models.JSONField(default=dict, blank=True, help_text="vhids by interface, as discovery last saw")
    seen_addresses = models.JSONField(default=dict, blank=True,
                                      help_text="its own addresses by interface ('A/P', IPv4 and global IPv6), as "
                                                "discovery last saw: a unicast peer on an interface other than em0's")

    class Meta:
        ordering = ["cluster", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="unique_server_name_per_cluster")]

    def __str__(self) -> str:
        return self.name

    def address_on(self, interface: str, family6: bool) -> str:
        """Its own address on `interface` (the server's address or address6 on the nodes' interface, else what
        discovery saw there); "" when none is known."""
        seen = [a.rpartition("/")[0] or a for a in (self.seen_addresses or {}).get(interface, [])]
        return next((a for a in seen if (":" in a) == family6), "")


class Run(models.Model):
    class Kind(models.TextChoices):
        SETUP = "setup", "Setup: preflight, prepare, verify (and configure)"
        PREFLIGHT = "preflight", "Preflight"
        PREPARE = "prepare", "Prepare"
        VERIFY = "verify", "Verify"
        CONFIGURE = "configure", "Configure service IPs"
        CHECK = "check", "Check"
        DRILL = "drill", "Failover drill"
        MAINTENANCE_ON = "maintenance-on", "Maintenance on"
        MAINTENANCE_OFF = "maintenance-off", "Maintenance off"
        REMOVE = "remove", "Remove service IPs"
        HANDOVER = "handover", "Planned handover"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    class Trigger(models.TextChoices):
        USER = "user", "A person (web or command line)"
        SCHEDULE = "schedule", "The drift schedule"
        FLEET = "fleet", "A fleet-wide run (--all)"

    ACTIVE = (Status.PENDING, Status.RUNNING)
    FINISHED = (Status.OK, Status.FAILED, Status.INTERRUPTED)

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.USER)
    target = models.ForeignKey("Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="the node of a maintenance run, the new master of a handover")
    service_ip = models.ForeignKey(ServiceIP, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="a Remove of one service IP (empty: all of them)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_name = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)
    rev = models.BigIntegerField(default=0, help_text="revision of the run's last change (status, summary)")
    planned_rev = models.BigIntegerField(default=0, help_text="revision at which its step rows were planned")

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["cluster", "status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def done(self) -> bool:
        return self.status in self.FINISHED


class Step(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        CHANGED = "changed", "Changed"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        WARNING = "warning", "Warning"

    UNFINISHED = (Status.PENDING, Status.RUNNING)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    server = models.ForeignKey(Server, null=True, on_delete=models.SET_NULL, related_name="steps")
    server_name = models.CharField(max_length=63, blank=True, help_text="empty for cluster-wide rows")
    cluster_wide = models.BooleanField(default=False, help_text="check, drill, maintenance: not one server's")
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
    live = models.TextField(blank=True, help_text="the last lines of output while the step runs, secrets masked")
    rev = models.BigIntegerField(default=0, help_text="revision of the row's last change")

    class Meta:
        ordering = ["run", "cluster_wide", "server_name", "position"]
        indexes = [models.Index(fields=["run", "rev"])]
        constraints = [models.UniqueConstraint(fields=["run", "cluster_wide", "server_name", "position"],
                                               name="unique_step")]

    def __str__(self) -> str:
        return f"{self.where} {self.name}: {self.status}"

    @property
    def where(self) -> str:
        return "cluster-wide" if self.cluster_wide else self.server_name

    @property
    def duration_ms(self) -> int | None:
        if self.started and self.finished:
            return int((self.finished - self.started).total_seconds() * 1000)
        return None


class Drill(models.Model):
    """One failover rehearsal (what a client saw, against CARP's bound), or one planned handover (the probes each
    service IP lost while every one moved to the named node)."""

    class Kind(models.TextChoices):
        DRILL = "drill", "Failover drill"
        HANDOVER = "handover", "Planned handover"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="drills")
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="drills")
    started = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
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
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DRILL)
    probes = models.JSONField(default=list, blank=True, help_text='per address: {"address", "sent", "lost"}')

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"drill {self.pk} on {self.cluster}: {self.status}"


class CarpEvent(models.Model):
    """One CARP transition of one node, as its devd rule logged it: recorded exactly once (epoch, seq)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="carp_events")
    server = models.ForeignKey(Server, null=True, on_delete=models.SET_NULL, related_name="carp_events")
    node = models.CharField(max_length=63)
    vhid = models.PositiveSmallIntegerField()
    interface = models.CharField(max_length=15)
    old_state = models.CharField(max_length=10)
    new_state = models.CharField(max_length=10)
    reason = models.CharField(max_length=200, blank=True)
    node_time = models.DateTimeField(null=True, help_text="when the node logged it (its clock)")
    received = models.DateTimeField(auto_now_add=True)
    epoch = models.CharField(max_length=32)
    seq = models.BigIntegerField()

    class Meta:
        ordering = ["-node_time", "-id"]
        constraints = [models.UniqueConstraint(fields=["server", "epoch", "seq"], name="carp_event_once")]
        indexes = [models.Index(fields=["cluster", "node_time"])]

    def __str__(self) -> str:
        return f"{self.node} {self.vhid}@{self.interface} {self.old_state} -> {self.new_state}"


class NotificationTarget(models.Model):
    """Where cluster events go: a webhook (JSON POST) or an email address; all clusters or one."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "Email"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    address = models.CharField(max_length=500, help_text="https://… or someone@example.org")
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                help_text="empty: every cluster")
    header_name = models.CharField(max_length=100, blank=True, help_text="an optional secret header, e.g. "
                                   "Authorization")
    header_value_enc = models.TextField(blank=True, help_text="its value, encrypted")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "address"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.shown}"

    @property
    def shown(self) -> str:
        """The address as pages, messages and the audit log show it: a webhook's path and query often carry its
        token (Slack, Teams), so only the scheme, host and the path's last 4 characters are shown."""
        if self.kind != self.Kind.WEBHOOK:
            return self.address
        scheme, _, rest = self.address.partition("://")
        host, sep, tail = rest.partition("/")
        host = host.rpartition("@")[2]  # user:password@ never shown
        return f"{scheme}://{host}/…{tail[-4:]}" if sep and len(tail) > 4 else f"{scheme}://{host}/{tail}"


class Notice(models.Model):
    """One cluster event worth telling people about (one per cluster event, whatever the number of VIPs)."""

    class Kind(models.TextChoices):
        MASTER_CHANGED = "master_changed", "Master changed"
        SPLIT_BRAIN = "split_brain", "Split brain (two MASTERs)"
        NO_MASTER = "no_master", "No MASTER"
        NODE_UNREACHABLE = "node_unreachable", "Node unreachable"
        DRIFT = "drift", "Drift found"
        FAILOVER_REVERTED = "failover_reverted", "Failover, then back"
        FLAPPING = "flapping", "Flapping"
        CALM = "calm", "Calm again"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    node = models.CharField(max_length=63, blank=True)
    vhid = models.PositiveSmallIntegerField(null=True, blank=True)
    old_state = models.CharField(max_length=10, blank=True)
    new_state = models.CharField(max_length=10, blank=True)
    reason = models.TextField(blank=True)
    time = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.cluster}: {self.get_kind_display()} {self.node}"


class Delivery(models.Model):
    """One notice to one target: tried by a Celery task, retried with backoff, its outcome shown."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="deliveries")
    target = models.ForeignKey(NotificationTarget, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.notice} -> {self.target}: {self.status}"


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
    token_id = models.CharField(max_length=16, blank=True, help_text="the API token the change came through")
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


class AuditCheckpoint(models.Model):
    """A verified point of the audit chain: every entry up to `entry_id` was checked, and this was its hash. The
    audit page's badge checks only what was added after the latest one; `manage.py audit_verify` walks it all."""

    entry_id = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    count = models.BigIntegerField(help_text="entries up to and including entry_id")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-entry_id"]

    def __str__(self) -> str:
        return f"verified up to entry {self.entry_id} ({self.count} entries)"


class ApiToken(models.Model):
    """A person's token for the REST API: `carpweb_<key_id>_<secret>`, shown once. Only a keyed hash of the
    secret is kept (wizard.services.tokens); the token acts with its user's role, or as a viewer when read-only."""

    key_id = models.CharField(max_length=16, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="what it is for, as its owner named it")
    digest = models.CharField(max_length=64, help_text="HMAC-SHA256 of the secret, keyed by the SECRET_KEY")
    read_only = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"token {self.key_id}"
