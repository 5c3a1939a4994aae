"""manage.py notify_add URL_OR_EMAIL [--cluster NAME] [--header NAME --header-value-file FILE]: where cluster
events go, validated as on the Notifications page."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.forms import NotificationTargetForm
from wizard.models import Cluster


class Command(BaseCommand):
    help = "Send cluster events (master changed, split brain, no MASTER, unreachable, drift) to a webhook or email."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("address", help="an http(s) webhook URL or an email address")
        parser.add_argument("--cluster", default="", help="only this cluster's events (default: every cluster)")
        parser.add_argument("--header", default="", help="a secret header's name, e.g. Authorization")
        parser.add_argument("--header-value-file", default="", help="a file holding its value (kept out of `ps`)")

    def handle(self, *args, address: str, cluster: str, header: str, header_value_file: str, **options):  # type: ignore[no-untyped-def]
        target_cluster = None
        if cluster:
            target_cluster = Cluster.objects.filter(name=cluster).first()
            if target_cluster is None:
                raise CommandError(f"no cluster named {cluster!r}")
        value = Path(header_value_file).read_text().strip() if header_value_file else ""
        form = NotificationTargetForm({"address": address, "cluster": target_cluster.pk if target_cluster else "",
                                       "header_name": header, "header_value": value})
        if not form.is_valid():
            problems = [f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in form.errors.items()]
            raise CommandError("; ".join(problems))
        target = services.target_add(address=form.cleaned_data["address"], cluster=target_cluster,
                                     header_name=form.cleaned_data["header_name"],
                                     header_value=form.cleaned_data["header_value"])
        self.stdout.write(f"cluster events of {cluster or 'every cluster'} now go to {target.shown}")
