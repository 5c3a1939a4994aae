"""A cluster as one JSON document (cluster_import's file, the API's body), validated by the wizard's own forms so
every refusal reads as it does on the pages, and saved through the services, all of it or nothing.

Shape (README, "Command line"): {name, subnet, gateway, subnet6, interface, master_advskew, configure_service_ip,
servers: [{name, address, address6, ssh_host, ssh_port, ssh_user, ssh_key | ssh_password, privilege,
preferred_master, role}], service_ips: [{interface, vhid, addresses, advbase, password, unicast}]}; the older
one-VIP keys (vip, vhid, advbase, password) are read as one service IP. A server's or service IP's empty secret
keeps the stored one, as on the pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from . import services
from .forms import ClusterForm, InterfaceForm, ServerFormSet, ServiceIPFormSet
from .models import Cluster, Server

Errors = dict[str, Any]  # field -> [sentences]; "servers"/"service_ips" -> [{field: [sentences]} per row]


class DocumentInvalid(Exception):
    """Field-keyed problems, as DRF reports them (rows as lists, one object per row, {} for a good one)."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(self.lines(errors)))
        self.errors = errors

    @staticmethod
    def lines(errors: Errors) -> list[str]:
        out = []
        for key, value in errors.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                label = "server" if key == "servers" else "service IP"
                out += [f"{label} {i + 1}: {f}: {' '.join(m)}" for i, row in enumerate(value) for f, m in row.items()]
            else:
                out.append(f"{key}: {' '.join(map(str, value))}")
        return out


def form_errors(form: Any) -> dict[str, list[str]]:
    return {field: [str(m) for m in msgs] for field, msgs in form.errors.items()}


def _rows_invalid(formset: Any, key: str) -> Errors:
    errors: Errors = {key: [form_errors(f) for f in formset.forms]}
    if formset.non_form_errors():
        errors["non_field_errors"] = [str(e) for e in formset.non_form_errors()]
    return errors


def service_ip_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's service IPs: `service_ips` as given, or the one-VIP keys of the older shape."""
    if "service_ips" in data:
        rows = data["service_ips"]
        if not isinstance(rows, list):
            raise DocumentInvalid({"service_ips": ["A list of {interface, vhid, addresses, ...}."]})
        return [r if isinstance(r, dict) else {} for r in rows]
    if not data.get("vip"):
        return []
    vip, _, prefix = str(data["vip"]).partition("/")
    if not prefix:
        prefix = "32" if data.get("vip_prefix_choice") != "subnet" else str(data.get("subnet", "/32")).split("/")[-1]
    return [{"interface": data.get("interface", ""), "vhid": data.get("vhid", 1), "advbase": data.get("advbase", 1),
             "addresses": [f"{vip}/{prefix}"], "password": data.get("password", "")}]


def merge_holder(data: dict[str, Any]) -> Cluster | None:
    """The cluster whose nodes these servers already are (for --merge), or None."""
    names = set()
    for s in data.get("servers", []) if isinstance(data.get("servers"), list) else []:
        if not isinstance(s, dict) or s.get("role", "node") != "node":
            continue
        host = s.get("ssh_host") or s.get("address", "")
        found = Server.objects.filter(role=Server.Role.NODE, ssh_host=host, ssh_port=s.get("ssh_port", 22)) \
            .exclude(cluster__name=data.get("name")).values_list("cluster__name", flat=True).first()
        if found:
            names.add(found)
    if len(names) > 1:
        raise services.ServiceError(f"These servers are nodes of {', '.join(sorted(names))}: merge those first "
                                    "(manage.py cluster_merge).")
    return Cluster.objects.get(name=names.pop()) if names else None


def _cluster(data: dict[str, Any], cluster: Cluster | None, expected_version: int | None) -> Cluster:
    form = ClusterForm({"name": data.get("name", ""), "subnet": data.get("subnet", ""),
                        "gateway": data.get("gateway", ""), "subnet6": data.get("subnet6", ""),
                        "master_advskew": data.get("master_advskew", 0),
                        "configure_service_ip": data.get("configure_service_ip", True)}, instance=cluster,
                       first_service_ip=False)
    errors = form_errors(form) if not form.is_valid() else {}
    if data.get("interface"):
        iform = InterfaceForm({"interface": data["interface"]})
        if not iform.is_valid():
            errors.update(form_errors(iform))
    if errors:
        raise DocumentInvalid(errors)
    try:
        fields = {**form.cleaned_data, "interface": data.get("interface", "")}
        return services.cluster_save(cluster=cluster, data=fields, expected_version=expected_version)
    except ValidationError as e:
        raise DocumentInvalid({"non_field_errors": e.messages}) from None


def _server_row(i: int, s: dict[str, Any], existing: dict[str, int], key_files: bool) -> dict[str, Any]:
    key = s.get("ssh_key", "") or ""
    if s.get("ssh_key_file"):
        problem = "" if key_files else "Send the key itself as ssh_key."
        try:
            key = Path(s["ssh_key_file"]).read_text() if key_files else ""
        except OSError as e:
            problem = f"cannot read it: {e}"
        if problem:
            raise DocumentInvalid({"servers": [{}] * i + [{"ssh_key_file": [problem]}]})
    return {"id": existing.get(s.get("name", ""), ""), "name": s.get("name", ""), "address": s.get("address", ""),
            "address6": s.get("address6", "") or "", "ssh_host": s.get("ssh_host", ""),
            "ssh_port": s.get("ssh_port", 22), "ssh_user": s.get("ssh_user", "root"),
            "auth": "password" if s.get("ssh_password") else s.get("auth", "key"), "private_key": key,
            "password": s.get("ssh_password", "") or "", "privilege": s.get("privilege", "root"),
            "preferred_master": s.get("preferred_master") or "", "role": s.get("role", "node")}


def _servers(cluster: Cluster, data: dict[str, Any], key_files: bool) -> None:
    servers = data.get("servers", [])
    if not isinstance(servers, list):
        raise DocumentInvalid({"servers": ["A list of {name, address, ssh_host, ...}."]})
    existing = {s.name: s.pk for s in cluster.servers.all()}
    post: dict[str, Any] = {"servers-TOTAL_FORMS": str(len(servers)), "servers-INITIAL_FORMS": "0"}
    for i, s in enumerate(servers):
        row = _server_row(i, s if isinstance(s, dict) else {}, existing, key_files)
        post.update({f"servers-{i}-{k}": v for k, v in row.items()})
    formset = ServerFormSet(post, cluster=cluster, prefix="servers")
    if not formset.is_valid():
        raise DocumentInvalid(_rows_invalid(formset, "servers"))
    services.servers_save(cluster=cluster, rows=[f.cleaned_data for f in formset.forms])


def _sip_post(rows: list[dict[str, Any]], interface: str, existing: dict[tuple[str, Any], int]) -> dict[str, Any]:
    post: dict[str, Any] = {"sips-TOTAL_FORMS": str(len(rows)), "sips-INITIAL_FORMS": "0"}
    for i, r in enumerate(rows):
        iface = r.get("interface") or interface
        addresses = r.get("addresses", [])
        post.update({f"sips-{i}-{k}": v for k, v in {
            "id": existing.get((iface, r.get("vhid")), ""), "interface": iface, "vhid": r.get("vhid", ""),
            "addresses": ", ".join(map(str, addresses)) if isinstance(addresses, list) else str(addresses),
            "advbase": r.get("advbase", 1), "password": r.get("password", "") or "",
            "announce": "unicast" if r.get("unicast") else "multicast"}.items()})
    return post


def _service_ips(cluster: Cluster, data: dict[str, Any], keep_others: bool) -> None:
    rows = service_ip_rows(data)
    if not rows:
        if not cluster.service_ips.exists():
            raise DocumentInvalid({"service_ips": ["A cluster needs at least one service IP."]})
        return
    existing: dict[tuple[str, Any], int] = {(s.interface, s.vhid): s.pk for s in cluster.service_ips.all()}
    formset = ServiceIPFormSet(_sip_post(rows, cluster.interface, existing), cluster=cluster, prefix="sips")
    if not formset.is_valid():
        raise DocumentInvalid(_rows_invalid(formset, "service_ips"))
    new = [f.cleaned_data for f in formset.forms]
    if keep_others:  # merging: the cluster's other service IPs stay as they are
        keys = {(r["interface"], r["vhid"]) for r in new}
        new = [{"id": s.pk, "interface": s.interface, "vhid": s.vhid, "addresses": list(s.addresses),
                "advbase": s.advbase, "announce": s.announce, "password": ""}
               for s in cluster.service_ips.all() if (s.interface, s.vhid) not in keys] + new
    services.service_ips_save(cluster=cluster, rows=new)


def cluster_document_save(data: Any, *, cluster: Cluster | None = None, by_name: bool = False, merge: bool = False,
                          key_files: bool = False, expected_version: int | None = None) -> Cluster:
    """Create or replace (`cluster`; or, `by_name`, the cluster of the document's name, as cluster_import does) a
    cluster from its document; with `merge`, a document whose servers are another cluster's nodes adds its
    service IPs there. Raises DocumentInvalid (field-keyed) or services.ServiceError (a sentence); nothing is saved
    then."""
    if not isinstance(data, dict):
        raise DocumentInvalid({"non_field_errors": ["One JSON object: a cluster."]})
    with transaction.atomic():
        holder = merge_holder(data) if merge else None
        if holder is not None:
            _service_ips(holder, data, keep_others=True)
            return holder
        if cluster is None and by_name:
            cluster = Cluster.objects.filter(name=data.get("name")).first()
        cluster = _cluster(data, cluster, expected_version)
        _servers(cluster, data, key_files)
        _service_ips(cluster, data, keep_others=False)
    return cluster
