"""manage.py cluster_import FILE.json: create or update a cluster and its servers, validated like the wizard."""

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.forms import ClusterForm, ServerFormSet
from wizard.models import Cluster


def _errors(form: Any) -> list[str]:
    return [f"{field}: {' '.join(msgs)}" for field, msgs in form.errors.items()]


class Command(BaseCommand):
    help = "Create or update a cluster from a JSON file (shape in README)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file")

    def handle(self, *args, file: str, **options):  # type: ignore[no-untyped-def]
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot read {file}: {e}") from None
        vip, _, prefix = str(data.get("vip", "")).partition("/")
        cluster = Cluster.objects.filter(name=data.get("name")).first()
        form = ClusterForm({"name": data.get("name", ""), "subnet": data.get("subnet", ""),
                            "gateway": data.get("gateway", ""), "vip": vip, "vhid": data.get("vhid", 1),
                            "advbase": data.get("advbase", 1), "carp_password": data.get("password", ""),
                            "vip_prefix_choice": "32" if prefix in ("", "32") else "subnet",
                            "master_advskew": data.get("master_advskew", 0),
                            "configure_service_ip": data.get("configure_service_ip", True)}, instance=cluster)
        if not form.is_valid():
            raise CommandError("cluster: " + "; ".join(_errors(form)))
        try:
            cluster = services.cluster_save(cluster=cluster, data={**form.cleaned_data,
                                                                   "interface": data.get("interface", "")},
                                            carp_password=form.cleaned_data["carp_password"])
        except ValidationError as e:
            raise CommandError(f"cluster: {'; '.join(e.messages)}") from None
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
                   "ssh_host": s.get("ssh_host", ""), "ssh_port": s.get("ssh_port", 22),
                   "ssh_user": s.get("ssh_user", "root"), "auth": "password" if s.get("ssh_password") else "key",
                   "private_key": key, "password": s.get("ssh_password", ""),
                   "privilege": s.get("privilege", "root"), "preferred_master": s.get("preferred_master") or "",
                   "role": s.get("role", "node")}
            post.update({f"servers-{i}-{k}": v for k, v in row.items()})
        formset = ServerFormSet(post, cluster=cluster, prefix="servers")
        if not formset.is_valid():
            problems = [f"server {i + 1}: {m}" for i, f in enumerate(formset.forms) for m in _errors(f)]
            raise CommandError("; ".join(problems + [str(e) for e in formset.non_form_errors()]))
        services.servers_save(cluster=cluster, rows=[f.cleaned_data for f in formset.forms])
        if data.get("interface"):
            from wizard.forms import InterfaceForm

            iform = InterfaceForm({"interface": data["interface"]})
            if not iform.is_valid():
                raise CommandError("interface: " + "; ".join(_errors(iform)))
        self.stdout.write(f"cluster {cluster.name} saved with {cluster.servers.count()} servers")
