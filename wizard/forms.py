"""Forms: every field validated with a message next to it; secrets are write-only."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from . import validation as v
from .models import Cluster, Run, Server, ServiceIP
from .roles import Role
from .services.clusters import unicast_problem
from .services.webhooks import address_problem, header_name_problem, literal_address

SECRET_KEPT = "stored encrypted; leave empty to keep it"  # noqa: S105 - a hint, not a secret


class ClusterForm(forms.ModelForm):
    """The cluster's node-wide settings; when it is created, also its first service IP (more come in the Service
    IPs step)."""

    FIRST_SIP = ("vip", "vhid", "advbase", "carp_password", "vip_prefix_choice")
    vip = forms.CharField(label="Service IP (VIP)", widget=forms.TextInput(attrs={"placeholder": "192.0.2.100"}),
                          help_text="The first service IP; add more, IPv6 and on other interfaces, in step 4.")
    vhid = forms.IntegerField(initial=1, label="vhid",
                              help_text="1-255, the same on every server, unique on the network segment.")
    advbase = forms.IntegerField(initial=1, label="advbase",
                                 help_text="Seconds between advertisements (1-254); failover takes about "
                                 "3 x advbase.")
    carp_password = forms.CharField(
        required=False, label="CARP password", strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Up to 19 bytes (all FreeBSD keeps). Left empty, carpweb generates one. Never shown again.")
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    vip_prefix_choice = forms.ChoiceField(
        label="VIP prefix", choices=[("32", "/32 (FreeBSD Handbook)"), ("subnet", "the subnet's prefix (pfSense)")],
        initial="32")

    class Meta:
        model = Cluster
        fields = ["name", "subnet", "gateway", "subnet6", "master_advskew", "configure_service_ip"]
        labels = {"master_advskew": "Preferred master's advskew", "subnet6": "IPv6 prefix (optional)",
                  "configure_service_ip": "The wizard's run also configures the service IPs"}
        help_texts = {"name": "A name for this cluster, e.g. web.",
                      "subnet6": "The nodes' IPv6 prefix, when service IPs have IPv6 addresses: 2001:db8::/64."}

    def __init__(self, *args: Any, first_service_ip: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gateway"].widget = forms.TextInput(attrs={"placeholder": "192.0.2.1"})
        self.fields["subnet"].widget.attrs["placeholder"] = "192.0.2.0/24"
        self.fields["subnet6"].widget.attrs["placeholder"] = "2001:db8::/64"
        self.fields["master_advskew"].required = False
        if self.instance.pk:
            self.initial["version"] = self.instance.version
        if self.instance.pk or not first_service_ip:
            for name in self.FIRST_SIP:  # edited in the Service IPs step
                del self.fields[name]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        v.validate_name(name)
        return name

    def clean_subnet(self) -> str:
        return str(v.parse_network(self.cleaned_data["subnet"].strip()))

    def clean_subnet6(self) -> str:
        value = self.cleaned_data["subnet6"].strip()
        return str(v.parse_network6(value)) if value else ""

    def clean_vhid(self) -> int:
        return v.validate_vhid(self.cleaned_data["vhid"])

    def clean_advbase(self) -> int:
        return v.validate_advbase(self.cleaned_data["advbase"])

    def clean_master_advskew(self) -> int:
        skew = self.cleaned_data["master_advskew"] or 0
        if not 0 <= skew <= 99:
            raise ValidationError("0-99: backups get 100, 200, ... so the preferred master must stay below them.")
        return skew

    def clean_carp_password(self) -> str:
        value = self.cleaned_data["carp_password"]
        if value:
            v.validate_carp_password(value)
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        subnet = data.get("subnet")
        if not subnet:
            return data
        net = ipaddress.IPv4Network(subnet)
        seen: dict[str, str] = {}
        fields = (("gateway", "gateway"), ("vip", "service IP")) if "vip" in self.fields else (("gateway", "gateway"),)
        for field, what in fields:
            if not data.get(field):
                continue
            try:
                addr = str(v.check_in_subnet(net, data[field], what))
            except ValidationError as e:
                self.add_error(field, e)
                continue
            if addr in seen:
                self.add_error(field, f"The {what} must differ from the {seen[addr]}.")
            seen[addr] = what
            data[field] = addr
        if "vip" in self.fields and data.get("vip") and not self.errors.get("vip"):
            prefix = 32 if data.get("vip_prefix_choice") != "subnet" else net.prefixlen
            data["first_service_ip"] = {"interface": "", "vhid": data.get("vhid"), "advbase": data.get("advbase"),
                                        "addresses": [f"{data['vip']}/{prefix}"], "password": data.get("carp_password")}
        return data


class ServiceIPForm(forms.Form):
    """One service IP: a vhid on an interface, its addresses, advbase, password and announcement mode."""

    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    interface = forms.CharField(max_length=15, widget=forms.TextInput(attrs={"placeholder": "em0",
                                                                             "list": "interfaces-seen"}))
    vhid = forms.IntegerField(label="vhid", help_text="1-255, unique on the interface's segment.")
    addresses = forms.CharField(max_length=800, widget=forms.TextInput(
        attrs={"placeholder": "192.0.2.100, 2001:db8::100/64"}), help_text="IPv4 and/or IPv6, comma-separated; "
        "IPv6 needs its prefix.")
    advbase = forms.IntegerField(initial=1, label="advbase (s)")
    password = forms.CharField(required=False, strip=True, label="CARP password", widget=forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "new-password"}), help_text="Empty: generated (new) or kept.")
    announce = forms.ChoiceField(choices=ServiceIP.Announce.choices, initial=ServiceIP.Announce.MULTICAST,
                                 label="Announcements")

    def clean_interface(self) -> str:
        value = self.cleaned_data["interface"].strip()
        v.validate_interface(value)
        return value

    def clean_vhid(self) -> int:
        return v.validate_vhid(self.cleaned_data["vhid"])

    def clean_advbase(self) -> int:
        return v.validate_advbase(self.cleaned_data["advbase"])

    def clean_addresses(self) -> list[str]:
        return v.parse_service_addresses(self.cleaned_data["addresses"])

    def clean_password(self) -> str:
        value = self.cleaned_data["password"]
        if value:
            v.validate_carp_password(value)
        return value


class BaseServiceIPFormSet(forms.BaseFormSet):
    """The cluster's service IPs: vhids unique per interface, addresses unique, inside the nodes' networks on
    the nodes' interface; unicast only for a pair whose every node has the address family's address."""

    def __init__(self, *args: Any, cluster: Cluster, **kwargs: Any) -> None:
        self.cluster = cluster
        super().__init__(*args, **kwargs)

    def clean(self) -> None:
        if any(self.errors):
            return
        cluster = self.cluster
        nodes = list(cluster.servers.filter(role=Server.Role.NODE))
        reserved = {cluster.gateway: "the gateway", **{s.address: f"{s.name}'s address" for s in nodes},
                    **{s.address6: f"{s.name}'s address" for s in nodes if s.address6}}
        net = ipaddress.IPv4Network(cluster.subnet) if cluster.subnet else None
        net6 = ipaddress.IPv6Network(cluster.subnet6) if cluster.subnet6 else None
        vhids: set[tuple[str, int]] = set()
        seen: dict[str, int] = {}
        rows = 0
        for form in self.forms:
            row = form.cleaned_data
            if not row or row.get("DELETE"):
                continue
            rows += 1
            key = (row["interface"], row["vhid"])
            if key in vhids:
                form.add_error("vhid", f"vhid {row['vhid']} is already used on {row['interface']} in this cluster.")
            vhids.add(key)
            for address in row["addresses"]:
                host = address.split("/")[0]
                addr = ipaddress.ip_address(host)
                if str(addr) in reserved:
                    form.add_error("addresses", f"{host} is {reserved[str(addr)]}.")
                elif str(addr) in seen:
                    form.add_error("addresses", f"{host} is in another service IP already.")
                seen[str(addr)] = 1
                if row["interface"] == cluster.interface:
                    if addr.version == 4 and net is not None and addr not in net:
                        form.add_error("addresses", f"{host} is outside the nodes' subnet {net} on "
                                       f"{cluster.interface}.")
                    if addr.version == 6 and net6 is not None and addr not in net6:
                        form.add_error("addresses", f"{host} is outside the nodes' IPv6 prefix {net6}.")
            if row["announce"] == ServiceIP.Announce.UNICAST:
                problem = unicast_problem(nodes, row["addresses"], row["interface"], cluster.interface)
                if problem:
                    form.add_error("announce", problem)
        if rows == 0:
            raise ValidationError("A cluster needs at least one service IP.")


ServiceIPFormSet = cast(type[BaseServiceIPFormSet], forms.formset_factory(
    ServiceIPForm, formset=BaseServiceIPFormSet, extra=0, min_num=1, validate_min=True, max_num=255,
    can_delete=True))


class ServerForm(forms.Form):
    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(max_length=63, widget=forms.TextInput(attrs={"placeholder": "server-1"}))
    address = forms.CharField(label="Address on the subnet",
                              widget=forms.TextInput(attrs={"placeholder": "192.0.2.11"}))
    address6 = forms.CharField(label="IPv6 address (optional)", required=False,
                               widget=forms.TextInput(attrs={"placeholder": "2001:db8::11"}))
    ssh_host = forms.CharField(label="SSH host", required=False, help_text="Defaults to the address.")
    ssh_port = forms.IntegerField(label="SSH port", initial=22, required=False)
    ssh_user = forms.CharField(label="SSH user", initial="root")
    auth = forms.ChoiceField(choices=Server.Auth.choices, initial="key", label="Authentication")
    private_key = forms.CharField(required=False, strip=False, label="Private key (paste)",
                                  widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off",
                                                               "placeholder": "-----BEGIN OPENSSH PRIVATE KEY-----"}))
    key_file = forms.FileField(required=False, label="or upload the key file")
    password = forms.CharField(required=False, strip=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))
    privilege = forms.ChoiceField(choices=Server.Privilege.choices, initial="root")
    role = forms.ChoiceField(choices=Server.Role.choices, initial="node", required=False)
    preferred_master = forms.BooleanField(required=False, label="Preferred master")

    def __init__(self, *args: Any, stored_auth: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_auth = stored_auth  # the kind of the secret stored for this server ("" when none)
        if stored_auth:
            for f in ("private_key", "password"):
                self.fields[f].widget.attrs["placeholder"] = SECRET_KEPT

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        v.validate_name(name)
        return name

    def clean_address(self) -> str:
        value = self.cleaned_data["address"].strip()
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValidationError("Enter the server's IPv4 address on the subnet.") from None

    def clean_address6(self) -> str | None:
        value = self.cleaned_data["address6"].strip()
        if not value:
            return None
        try:
            addr = ipaddress.IPv6Address(value)
        except ValueError:
            raise ValidationError("Enter the server's IPv6 address, such as 2001:db8::11 (no prefix).") from None
        if addr.is_link_local:
            raise ValidationError("Enter its global address, not the link-local one.")
        return str(addr)

    def clean_ssh_host(self) -> str:
        value = self.cleaned_data["ssh_host"].strip()
        if value:
            v.validate_ssh_host(value)
        return value

    def clean_ssh_port(self) -> int:
        port = self.cleaned_data["ssh_port"] or 22
        if not 1 <= port <= 65535:
            raise ValidationError("A TCP port is 1-65535.")
        return port

    def clean_ssh_user(self) -> str:
        user = self.cleaned_data["ssh_user"].strip()
        v.validate_ssh_user(user)
        return user

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["role"] = data.get("role") or Server.Role.NODE
        if not data.get("ssh_host") and data.get("address"):
            data["ssh_host"] = data["address"]
        upload = data.get("key_file")
        key = data.get("private_key") or ""
        if upload:
            if upload.size > 20000:
                self.add_error("key_file", "That file is too large to be an SSH private key.")
            else:
                key = upload.read().decode(errors="replace")
        # A stored secret is kept only for the same method: a key is never sent as a password, nor the reverse.
        keeps = bool(self.stored_auth) and self.stored_auth == data.get("auth")
        switched = bool(self.stored_auth) and not keeps
        if data.get("auth") == "key":
            data["secret"] = key.strip() + "\n" if key.strip() else ""
            if key.strip() and "PRIVATE KEY" not in key:
                self.add_error("private_key",
                               "Paste an SSH private key (it starts with -----BEGIN ... PRIVATE KEY-----).")
            elif not key.strip() and not keeps:
                self.add_error("private_key", "You switched to a private key: paste or upload it (the stored "
                               "password is not kept)." if switched else
                               "Paste or upload the private key carpweb logs in with.")
        else:
            data["secret"] = data.get("password") or ""
            if not data["secret"] and not keeps:
                self.add_error("password", "You switched to a password: enter it (the stored key is never sent as "
                               "a password)." if switched else "Enter the SSH password.")
            elif "PRIVATE KEY-----" in data["secret"]:
                self.add_error("password", "That is a private key: choose Private key as the authentication.")
        if data.get("privilege") == "root" and data.get("ssh_user") not in (None, "root"):
            self.add_error("privilege", "Logging in as a user other than root needs sudo -n or doas -n.")
        return data


class BaseServerFormSet(forms.BaseFormSet):
    def __init__(self, *args: Any, cluster: Cluster | None = None, **kwargs: Any) -> None:
        self.cluster = cluster
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        kwargs = super().get_form_kwargs(index)
        stored = (dict(self.cluster.servers.exclude(secret_enc="").values_list("pk", "auth"))
                  if self.cluster else {})
        initial = self.initial[index] if self.initial and index is not None and index < len(self.initial) else {}
        kwargs["stored_auth"] = stored.get(initial.get("id") or 0, "")
        if self.is_bound and index is not None:
            raw = str(self.data.get(f"{self.prefix}-{index}-id") or "")
            kwargs["stored_auth"] = stored.get(int(raw), "") if raw.isdigit() else ""
        return kwargs

    def clean(self) -> None:
        if any(self.errors):
            return
        rows = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if len(rows) < 2:
            raise ValidationError("A CARP cluster needs at least 2 servers.")
        names: set[str] = set()
        addrs: dict[str, str] = {}
        cluster = self.cluster
        net = ipaddress.IPv4Network(cluster.subnet) if cluster else None
        reserved = {cluster.gateway: "the gateway"} if cluster else {}
        if cluster and cluster.pk:
            reserved.update({h: "a service IP" for sip in cluster.service_ips.all() for h in sip.hosts})
        for form in self.forms:
            row = form.cleaned_data
            if not row:
                continue
            name, addr = row.get("name"), row.get("address")
            if name is None or addr is None:
                continue
            if name in names:
                form.add_error("name", "Server names must be unique in the cluster.")
            names.add(name)
            if net is not None:
                try:
                    v.check_in_subnet(net, addr, "server")
                except ValidationError as e:
                    form.add_error("address", e)
            if addr in reserved:
                form.add_error("address", f"{addr} is {reserved[addr]}.")
            elif addr in addrs:
                form.add_error("address", f"{addr} is also {addrs[addr]}'s address.")
            addrs[addr] = name
        if len([r for r in rows if r.get("role", "node") == "node"]) < 2:
            raise ValidationError("A CARP cluster needs at least 2 CARP nodes (probes do not count).")
        masters = [r for r in rows if r.get("preferred_master")]
        if len(masters) > 1:
            raise ValidationError("Choose one preferred master.")
        if not masters:
            next(r for r in rows if r.get("role", "node") == "node")["preferred_master"] = True


ServerFormSet = cast(type[BaseServerFormSet], forms.formset_factory(
    ServerForm, formset=BaseServerFormSet, extra=0, min_num=2, validate_min=True, max_num=200, can_delete=True))


class InterfaceForm(forms.Form):
    interface = forms.CharField(max_length=15, widget=forms.TextInput(attrs={"placeholder": "em0"}),
                                help_text="The interface that carries the servers' addresses, e.g. em0.")

    def clean_interface(self) -> str:
        value = self.cleaned_data["interface"].strip()
        v.validate_interface(value)
        return value


FINGERPRINT_RE = r"^SHA256:[A-Za-z0-9+/]{43}$"


class HostKeyPinForm(forms.Form):
    """The host keys an admin confirmed: one optional fingerprint per server (`fp-<server id>`)."""

    repin = forms.BooleanField(required=False)
    next = forms.CharField(required=False)

    def __init__(self, *args: Any, servers: list[Server], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.servers = {s.pk: s for s in servers}
        for pk, server in self.servers.items():
            self.fields[f"fp-{pk}"] = forms.RegexField(regex=FINGERPRINT_RE, required=False, label=server.name,
                                                       error_messages={"invalid": f"{server.name}: that is not a "
                                                                       "SHA256 host key fingerprint."})

    def confirmed(self) -> dict[int, str]:
        return {pk: self.cleaned_data[f"fp-{pk}"] for pk in self.servers if self.cleaned_data.get(f"fp-{pk}")}

    def errors_as_sentences(self) -> list[str]:
        return [str(m) for messages in self.errors.values() for m in messages]


class NotificationTargetForm(forms.Form):
    """A webhook (http or https URL) or an email address, for all clusters or one; an optional secret header."""

    address = forms.CharField(max_length=500, label="Webhook URL or email address",
                              widget=forms.TextInput(attrs={"placeholder": "https://hooks.example.org/carp or "
                                                                           "oncall@example.org"}))
    cluster = forms.ModelChoiceField(queryset=Cluster.objects.all(), required=False, empty_label="every cluster")
    header_name = forms.CharField(required=False, max_length=100, label="Secret header (optional)",
                                  widget=forms.TextInput(attrs={"placeholder": "Authorization"}))
    header_value = forms.CharField(required=False, strip=True, label="Its value", max_length=500,
                                   widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                                   help_text="Stored encrypted, never shown again.")

    def clean_address(self) -> str:
        from django.core.validators import EmailValidator, URLValidator

        value = self.cleaned_data["address"].strip()
        if "://" in value or value.lower().startswith("http"):
            try:
                URLValidator(schemes=["http", "https"])(value)
            except ValidationError:
                raise ValidationError("Only http:// and https:// webhook URLs are accepted, such as "
                                      "https://hooks.example.org/carp.") from None
            host = value.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
            literal = literal_address(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
            problem = address_problem(literal) if literal is not None else None
            if problem:
                raise ValidationError(f"Refused: {problem}.")
            return value
        try:
            EmailValidator()(value)
        except ValidationError:
            raise ValidationError("Enter an email address (someone@example.org) or an http(s) webhook URL.") from None
        return value

    def clean_header_name(self) -> str:
        name = self.cleaned_data["header_name"].strip()
        problem = header_name_problem(name) if name else None
        if problem:
            raise ValidationError(problem)
        return name

    def clean_header_value(self) -> str:
        value = self.cleaned_data["header_value"]
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValidationError("A header value cannot hold control characters or line breaks.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("header_name") and not data.get("header_value"):
            self.add_error("header_value", "Give the header a value, or leave both empty.")
        if data.get("header_value") and not data.get("header_name"):
            self.add_error("header_name", "Name the header this value goes in.")
        if data.get("header_name") and "@" in str(data.get("address", "")) and "://" not in data["address"]:
            self.add_error("header_name", "Headers go with webhooks, not email.")
        return data


class RunForm(forms.Form):
    kind = forms.ChoiceField(choices=Run.Kind.choices)
    target = forms.CharField(required=False)
    confirm = forms.BooleanField(required=False)
    service_ip = forms.IntegerField(required=False, min_value=1)


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150)
    cluster = forms.CharField(required=False, max_length=63)
    action = forms.CharField(required=False, max_length=40)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                               min_length=10, help_text="At least 10 characters.")
    role = forms.ChoiceField(choices=[(r.value, r.value) for r in Role])

    def clean_username(self) -> str:
        from django.contrib.auth import get_user_model

        name = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username=name).exists():
            raise ValidationError("That user exists already.")
        return name


class TokenCreateForm(forms.Form):
    """A new API token of one's own (wizard.services.tokens)."""

    name = forms.CharField(max_length=100, required=False, label="What it is for",
                           widget=forms.TextInput(attrs={"placeholder": "ci-pipeline"}))
    read_only = forms.BooleanField(required=False, label="Read-only (it may only read, whatever your role)")
    expires_days = forms.IntegerField(required=False, min_value=1, max_value=3650, label="Expires after (days)",
                                      help_text="Empty: never. It can be revoked at any time.")


SERVER_FIELDS = ("id", "name", "address", "address6", "ssh_host", "ssh_port", "ssh_user", "auth", "privilege",
                 "preferred_master", "role")
SIP_FIELDS = ("id", "interface", "vhid", "addresses", "advbase", "announce")


def typed_rows(data: Any, prefix: str, fields: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
    """The rows a formset's POST holds, as typed (for "add a row": the page comes back with every value kept;
    secrets are not among `fields`: they never go back to the browser). At most `limit` rows."""
    raw = str(data.get(f"{prefix}-TOTAL_FORMS", "") or "")
    total = int(raw) if raw.isdigit() else 1
    return [{f: data.get(f"{prefix}-{i}-{f}") for f in fields} for i in range(min(total, limit))]
