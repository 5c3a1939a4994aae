"""manage.py cluster_import FILE.json [--merge]: create or update a cluster, its servers and its service IPs,
validated like the wizard. Today's one-VIP shape (vip, vhid, advbase, password) is read as one service IP."""

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from wizard import services
from wizard.forms import ClusterForm, InterfaceForm, ServerFormSet, ServiceIPFormSet
from wizard.models import Cluster, Server


def _errors(form: Any) -> list[str]:
    return [f"{field}: {' '.join(msgs)}" for field, msgs in form.errors.items()]


def service_ip_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's service IPs: `service_ips` as given, or the one-VIP keys of the older shape."""
    if "service_ips" in data:
        rows = data["service_ips"]
        if not isinstance(rows, list):
            raise CommandError("service_ips: a list of {interface, vhid, addresses, ...}")
        return [r if isinstance(r, dict) else {} for r in rows]
    if not data.get("vip"):
        return []
    vip, _, prefix = str(data["vip"]).partition("/")
    if not prefix:
        prefix = "32" if data.get("vip_prefix_choice") != "subnet" else str(data.get("subnet", "/32")).split("/")[-1]
    return [{"interface": data.get("interface", ""), "vhid": data.get("vhid", 1), "advbase": data.get("advbase", 1),
             "addresses": [f"{vip}/{prefix}"], "password": data.get("password", "")}]


def _sip_post(rows: list[dict[str, Any]], interface: str, existing: dict[tuple[str, Any], int]) -> dict[str, Any]:
    post: dict[str, Any] = {"sips-TOTAL_FORMS": str(len(rows)), "sips-INITIAL_FORMS": "0"}
    for i, r in enumerate(rows):
        iface = r.get("interface") or interface
        addresses = r.get("addresses", [])
        post.update({f"sips-{i}-{k}": v for k, v in {
            "id": existing.get((iface, r.get("vhid")), ""), "interface": iface, "vhid": r.get("vhid", ""),
            "addresses": ", ".join(addresses) if isinstance(addresses, list) else str(addresses),
            "advbase": r.get("advbase", 1), "password": r.get("password", ""),
            "announce": "unicast" if r.get("unicast") else "multicast"}.items()})
    return post


class Command(BaseCommand):
    help = "Create or update a cluster from a JSON file (shape in README); --merge adds the service IPs to the " \
           "cluster that already holds these servers."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")
        parser.add_argument("--merge", action="store_true",
                            help="the servers are another cluster's nodes: add these service IPs to that cluster")

    def handle(self, *args, file: str, merge: bool = False, **options):  # type: ignore[no-untyped-def]
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot read {file}: {e}") from None
        if not isinstance(data, dict):
            raise CommandError("the file holds one JSON object (a cluster)")
        with transaction.atomic():  # all of it or nothing
            cluster = self._holder(data, merge) if merge else None
            if cluster is None:
                cluster = self._cluster(data)
                self._servers(cluster, data)
            self._service_ips(cluster, data, keep_others=merge)
        sips = cluster.service_ips.count()
        self.stdout.write(f"cluster {cluster.name} saved with {cluster.servers.count()} servers and {sips} service "
                          f"IP{'s' if sips != 1 else ''}")

    def _holder(self, data: dict[str, Any], merge: bool) -> Cluster | None:
        """--merge: the cluster whose nodes these servers are (None: no such cluster, import as usual)."""
        names = set()
        for s in data.get("servers", []):
            if s.get("role", "node") != "node":
                continue
            host = s.get("ssh_host") or s.get("address", "")
            found = Server.objects.filter(role=Server.Role.NODE, ssh_host=host, ssh_port=s.get("ssh_port", 22)) \
                .exclude(cluster__name=data.get("name")).values_list("cluster__name", flat=True).first()
            if found:
                names.add(found)
        if len(names) > 1:
            raise CommandError(f"these servers are nodes of {', '.join(sorted(names))}: merge those first "
                               "(manage.py cluster_merge)")
        return Cluster.objects.get(name=names.pop()) if names else None

    def _cluster(self, data: dict[str, Any]) -> Cluster:
        cluster = Cluster.objects.filter(name=data.get("name")).first()
        form = ClusterForm({"name": data.get("name", ""), "subnet": data.get("subnet", ""),
                            "gateway": data.get("gateway", ""), "subnet6": data.get("subnet6", ""),
                            "master_advskew": data.get("master_advskew", 0),
                            "configure_service_ip": data.get("configure_service_ip", True)}, instance=cluster,
                           first_service_ip=False)
        if not form.is_valid():
            raise CommandError("cluster: " + "; ".join(_errors(form)))
        if data.get("interface"):
            iform = InterfaceForm({"interface": data["interface"]})
            if not iform.is_valid():
                raise CommandError("interface: " + "; ".join(_errors(iform)))
        try:
            return services.cluster_save(cluster=cluster, data={**form.cleaned_data,
                                                                "interface": data.get("interface", "")})
        except ValidationError as e:
            raise CommandError(f"cluster: {'; '.join(e.messages)}") from None

    def _servers(self, cluster: Cluster, data: dict[str, Any]) -> None:
        servers = data.get("servers", [])
        existing = {s.name: s.pk for s in cluster.servers.all()}
        post: dict[str, Any] = {"servers-TOTAL_FORMS": str(len(servers)), "servers-INITIAL_FORMS": "0"}
        for i, s in enumerate(servers):
            key = ""
            if s.get("ssh_key_file"):
                try:
                    key = Path(s["ssh_key_file"]).read_text()
                except OSError as e:
                    raise CommandError(f"server {s.get('name')}: cannot read ssh_key_file: {e}") from None
            row = {"id": existing.get(s.get("name"), ""), "name": s.get("name", ""), "address": s.get("address", ""),
                   "address6": s.get("address6", ""), "ssh_host": s.get("ssh_host", ""),
                   "ssh_port": s.get("ssh_port", 22), "ssh_user": s.get("ssh_user", "root"),
                   "auth": "password" if s.get("ssh_password") else "key", "private_key": key,
                   "password": s.get("ssh_password", ""), "privilege": s.get("privilege", "root"),
                   "preferred_master": s.get("preferred_master") or "", "role": s.get("role", "node")}
            post.update({f"servers-{i}-{k}": v for k, v in row.items()})
        formset = ServerFormSet(post, cluster=cluster, prefix="servers")
        if not formset.is_valid():
            problems = [f"server {i + 1}: {m}" for i, f in enumerate(formset.forms) for m in _errors(f)]
            raise CommandError("; ".join(problems + [str(e) for e in formset.non_form_errors()]))
        try:
            services.servers_save(cluster=cluster, rows=[f.cleaned_data for f in formset.forms])
        except services.ServiceError as e:
            raise CommandError(f"{e} (or import with --merge to add these service IPs to it)") from None

    def _service_ips(self, cluster: Cluster, data: dict[str, Any], keep_others: bool) -> None:
        rows = service_ip_rows(data)
        if not rows:
            if not cluster.service_ips.exists():
                raise CommandError("service_ips: a cluster needs at least one (or the one-VIP keys vip, vhid)")
            return
        existing: dict[tuple[str, Any], int] = {(s.interface, s.vhid): s.pk for s in cluster.service_ips.all()}
        post = _sip_post(rows, cluster.interface, existing)
        formset = ServiceIPFormSet(post, cluster=cluster, prefix="sips")
        if not formset.is_valid():
            problems = [f"service IP {i + 1}: {m}" for i, f in enumerate(formset.forms) for m in _errors(f)]
            raise CommandError("; ".join(problems + [str(e) for e in formset.non_form_errors()]))
        new = [f.cleaned_data for f in formset.forms]
        if keep_others:  # --merge: the cluster's other service IPs stay as they are
            keys = {(r["interface"], r["vhid"]) for r in new}
            new = [{"id": s.pk, "interface": s.interface, "vhid": s.vhid, "addresses": list(s.addresses),
                    "advbase": s.advbase, "announce": s.announce, "password": ""}
                   for s in cluster.service_ips.all() if (s.interface, s.vhid) not in keys] + new
        try:
            services.service_ips_save(cluster=cluster, rows=new)
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
