"""Views: thin. They validate with forms, hand the rules to services (and reads to selectors), and render; htmx
gets partials."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import revisions, selectors, services
from .forms import (
    SERVER_FIELDS,
    SIP_FIELDS,
    ClusterForm,
    HostKeyPinForm,
    InterfaceForm,
    RunForm,
    ServerFormSet,
    ServiceIPFormSet,
    typed_rows,
)
from .models import Cluster, Run
from .plan import PLANS
from .roles import Role, has_role, require_role

WIZARD_STEPS = [("wizard-cluster", "Cluster"), ("wizard-servers", "Servers"), ("wizard-interface", "Interface"),
                ("wizard-service-ips", "Service IPs"), ("wizard-review", "Review"), ("run", "Run")]


def _wizard(request: HttpRequest, template: str, cluster: Cluster | None, current: int, **ctx: Any) -> HttpResponse:
    return render(request, template, {"cluster": cluster, "steps": WIZARD_STEPS, "current": current, **ctx})


@require_role(Role.VIEWER)
@require_GET
def cluster_list(request: HttpRequest) -> HttpResponse:
    q, state = request.GET.get("q", "").strip()[:100], request.GET.get("state", "")
    rev = revisions.current()
    page = Paginator(selectors.cluster_inventory(q=q, state=state), 50).get_page(request.GET.get("page"))
    return render(request, "wizard/cluster_list.html", {
        "page": page, "q": q, "state": state, "states": selectors.INVENTORY_STATES, "rev": rev,
        "ids": ",".join(str(c.pk) for c in page.object_list)})


@require_role(Role.OPERATOR)
@require_POST
def check_all(request: HttpRequest) -> HttpResponse:
    """Check on every configured cluster; each run shows on the inventory as it proceeds."""
    items = services.fleet_start(kind=Run.Kind.CHECK, user=request.user)
    started = sum(item.run is not None for item in items)
    busy = [item.cluster.name for item in items if item.busy]
    left = [item for item in items if item.run is None and not item.busy]
    not_ready = [item.cluster.name for item in left if item.outcome == services.FleetOutcome.NOT_READY]
    text = f"Check started on {started} cluster(s)."
    if busy:
        text += f" Busy with another run, not checked: {_names(busy)}."
    if not_ready:
        text += f" Not ready to run (servers or host keys to confirm): {_names(not_ready)}."
    if len(left) > len(not_ready):
        text += f" {len(left) - len(not_ready)} cluster(s) without a configured service IP were left out."
    (messages.success if started and not busy and not not_ready else messages.warning)(request, text)
    return redirect("cluster-list")


def _names(names: list[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


@require_role(Role.VIEWER)
@require_GET
def cluster_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rev = revisions.current()
    cluster = get_object_or_404(Cluster, pk=pk)
    return render(request, "wizard/cluster_detail.html", {"rev": rev, **selectors.cluster_page(cluster)})


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def wizard_cluster(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk) if pk else None
    form = ClusterForm(request.POST or None, instance=cluster)
    if request.method == "POST" and form.is_valid():
        try:
            cluster = services.cluster_save(cluster=cluster, data=form.cleaned_data,
                                            expected_version=form.cleaned_data.get("version"))
        except services.ConcurrentEdit as e:
            form.add_error(None, str(e))
        else:
            return redirect("wizard-servers", pk=cluster.pk)
    return _wizard(request, "wizard/step_cluster.html", cluster, 0, form=form)


def _server_initial(cluster: Cluster) -> list[dict[str, Any]]:
    fields = ("name", "address", "address6", "ssh_host", "ssh_port", "ssh_user", "auth", "privilege",
              "preferred_master", "role")
    rows: list[dict[str, Any]] = [{"id": s.pk, **{f: getattr(s, f) for f in fields}} for s in cluster.servers.all()]
    return rows or [{"name": "server-1", "preferred_master": True}, {"name": "server-2"}]


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def wizard_servers(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    if request.method == "POST" and request.GET.get("add"):
        # Another row: keep every typed value (secrets excepted: they are never sent back to the browser).
        initial = typed_rows(request.POST, "servers", SERVER_FIELDS, limit=199)
        formset = ServerFormSet(initial=[*initial, {"name": f"server-{len(initial) + 1}", "ssh_user": "root"}],
                                cluster=cluster, prefix="servers")
    elif request.method == "POST":
        formset = ServerFormSet(request.POST, request.FILES, cluster=cluster, prefix="servers")
        if formset.is_valid():
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
            version = request.POST.get("version", "")
            try:
                services.servers_save(cluster=cluster, rows=rows,
                                      expected_version=int(version) if version.isdigit() else None)
            except services.ServiceError as e:
                messages.error(request, str(e))
            else:
                return redirect("wizard-interface", pk=cluster.pk)
    else:
        formset = ServerFormSet(initial=_server_initial(cluster), cluster=cluster, prefix="servers")
    return _wizard(request, "wizard/step_servers.html", cluster, 1, formset=formset)


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def wizard_interface(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = InterfaceForm(request.POST or None, initial={"interface": cluster.interface})
    if request.method == "POST" and form.is_valid():
        services.cluster_save(cluster=cluster, data={"interface": form.cleaned_data["interface"]})
        return redirect("wizard-service-ips", pk=cluster.pk)
    return _wizard(request, "wizard/step_interface.html", cluster, 2, form=form,
                   unpinned=cluster.servers.filter(host_key="").exists())


def _sip_initial(cluster: Cluster) -> list[dict[str, Any]]:
    return [{"id": s.pk, "interface": s.interface or cluster.interface, "vhid": s.vhid,
             "addresses": ", ".join(s.addresses), "advbase": s.advbase, "announce": s.announce}
            for s in cluster.service_ips.all()] or [
        {"interface": cluster.interface, "vhid": 1, "advbase": 1}]


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def wizard_service_ips(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 4: the cluster's service IPs (vhids with their addresses), added, edited or removed as a formset."""
    cluster = get_object_or_404(Cluster, pk=pk)
    if request.method == "POST" and request.GET.get("add"):
        # Another row: every typed value kept (passwords excepted: never sent back to the browser).
        initial = typed_rows(request.POST, "sips", SIP_FIELDS, limit=254)
        formset = ServiceIPFormSet(initial=[*initial, services.service_ip_suggest(cluster=cluster, rows=initial)],
                                   cluster=cluster, prefix="sips")
        if getattr(request, "htmx", False):  # htmx appends the new card; the typed ones (passwords too) stay put
            return render(request, "wizard/_sip_added.html", {
                "form": formset.forms[-1], "number": len(formset.forms), "formset": formset,
                "unicast": services.unicast_offer(cluster=cluster), "configured": set()})
    elif request.method == "POST":
        formset = ServiceIPFormSet(request.POST, cluster=cluster, prefix="sips")
        if formset.is_valid():
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
            version = request.POST.get("version", "")
            try:
                saved = services.service_ips_save(cluster=cluster, rows=rows,
                                                  expected_version=int(version) if version.isdigit() else None)
            except services.ServiceError as e:
                messages.error(request, str(e))
            else:
                _offer_reconfigure(request, cluster, saved.applied_changed)
                return redirect("wizard-review", pk=cluster.pk)
    else:
        formset = ServiceIPFormSet(initial=_sip_initial(cluster), cluster=cluster, prefix="sips")
    return _wizard(request, "wizard/step_service_ips.html", cluster, 3, formset=formset,
                   unicast=services.unicast_offer(cluster=cluster),
                   interfaces=services.interfaces_seen(cluster=cluster),
                   configured={s.pk for s in cluster.service_ips.filter(configured=True)})


@require_POST
@require_role(Role.ADMIN)
def wizard_discover(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    if cluster.servers.filter(host_key="").exists():
        return render(request, "wizard/_host_keys.html", {
            "cluster": cluster, "offers": services.host_keys_fetch(cluster=cluster), "next": "discover"})
    found = services.interfaces_discover(cluster=cluster)
    return render(request, "wizard/_discovered.html", {"cluster": cluster, "found": found})


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def wizard_review(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    return _wizard(request, "wizard/step_review.html", cluster, 4, plan=selectors.command_plan(cluster),
                   problems=services.cluster_readiness(cluster=cluster), servers=cluster.servers.all(),
                   service_ips=cluster.service_ips.all())


@require_POST
@require_role(Role.ADMIN)
def host_keys(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    return render(request, "wizard/_host_keys.html", {
        "cluster": cluster, "offers": services.host_keys_fetch(cluster=cluster), "next": request.POST.get("next", "")})


@require_POST
@require_role(Role.ADMIN)
def host_keys_pin(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = HostKeyPinForm(request.POST, servers=list(cluster.servers.all()))
    if not form.is_valid():
        messages.error(request, " ".join(form.errors_as_sentences()))
    else:
        try:
            # Re-pinning a changed key is only possible from a ticked box, on this admin-only view.
            pinned = services.host_keys_pin(cluster=cluster, confirmed=form.confirmed(), user=request.user,
                                            repin=form.cleaned_data["repin"])
        except services.ServiceError as e:
            messages.error(request, str(e))
        else:
            messages.success(request, "Pinned the host keys of " + (", ".join(pinned) or "no server") + ".")
    target = "wizard-interface" if request.POST.get("next") == "discover" else "wizard-review"
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(redirect(target, pk=cluster.pk).url)
    return redirect(target, pk=cluster.pk)


@require_POST
@require_role(Role.OPERATOR)
def run_create(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = RunForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown kind of run.")
        return redirect("cluster-detail", pk=pk)
    needed = PLANS[form.cleaned_data["kind"]].role
    if not has_role(request.user, needed):
        raise PermissionDenied(f"{form.cleaned_data['kind']} needs the {needed} role.")
    try:
        run = services.run_start(cluster=cluster, kind=form.cleaned_data["kind"], user=request.user,
                                 target=form.cleaned_data["target"], confirm=form.cleaned_data["confirm"],
                                 service_ip=form.cleaned_data["service_ip"])
    except services.ServiceError as e:
        messages.error(request, str(e))
        return redirect("wizard-review" if request.POST.get("back") == "review" else "cluster-detail", pk=pk)
    return redirect("run-detail", pk=run.pk)


@require_role(Role.VIEWER)
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rev = revisions.current()  # read first: the page is at least this new, the stream sends what comes after
    run = get_object_or_404(Run.objects.select_related("cluster"), pk=pk)
    page = selectors.run_page(run)
    if page["rows"] and not run.planned_rev:  # planned between the two reads: draw the run again, as planned
        run.refresh_from_db()
        page = selectors.run_page(run)
    if page["rows"]:  # drawn, so the plan need not come again; rows drawn newer are skipped by the page (data-rev)
        rev = max(rev, run.planned_rev)
    return _wizard(request, "wizard/run_detail.html", run.cluster, 5, rev=rev, **page)


def _offer_reconfigure(request: HttpRequest, cluster: Cluster, changed: list[str]) -> None:
    if changed:
        messages.warning(request, f"You changed {'; '.join(changed)} of {cluster.name}, which Configure already "
                         "applied on its servers: they keep the old values until Configure runs again.",
                         extra_tags=f"reconfigure cluster-{cluster.pk}")


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def cluster_delete(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    if request.method == "POST":
        if request.POST.get("confirm_name") != cluster.name:
            messages.error(request, "Type the cluster's name exactly to delete it.")
        else:
            services.cluster_delete(cluster=cluster)
            messages.success(request, f"Deleted {cluster.name} from the inventory (its servers were not touched).")
            return redirect("cluster-list")
    return render(request, "wizard/cluster_delete.html", {"cluster": cluster})
