"""Views: thin. They validate with forms, call one service, and render; htmx gets partials."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from . import crypto, selectors, services
from .forms import ClusterForm, InterfaceForm, RunForm, ServerFormSet
from .models import Cluster, Run

WIZARD_STEPS = [("wizard-cluster", "Cluster"), ("wizard-servers", "Servers"), ("wizard-interface", "Interface"),
                ("wizard-review", "Review"), ("run", "Run")]


def _wizard(request: HttpRequest, template: str, cluster: Cluster | None, current: int, **ctx: Any) -> HttpResponse:
    return render(request, template, {"cluster": cluster, "steps": WIZARD_STEPS, "current": current, **ctx})


def cluster_list(request: HttpRequest) -> HttpResponse:
    clusters = [(c, selectors.run_last(c)) for c in selectors.cluster_list()]
    return render(request, "wizard/cluster_list.html", {"clusters": clusters})


def cluster_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    return render(request, "wizard/cluster_detail.html", {
        "cluster": cluster, "runs": cluster.runs.all()[:20], "problems": services.cluster_readiness(cluster=cluster),
        "drills": cluster.drills.all()[:20], "diagnosis": [d for d in cluster.diagnosis.splitlines() if d]})


def wizard_cluster(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk) if pk else None
    form = ClusterForm(request.POST or None, instance=cluster)
    if request.method == "POST" and form.is_valid():
        cluster = services.cluster_save(cluster=cluster, data=form.cleaned_data,
                                        carp_password=form.cleaned_data["carp_password"])
        return redirect("wizard-servers", pk=cluster.pk)
    return _wizard(request, "wizard/step_cluster.html", cluster, 0, form=form)


def _server_initial(cluster: Cluster) -> list[dict[str, Any]]:
    fields = ("name", "address", "ssh_host", "ssh_port", "ssh_user", "auth", "privilege", "preferred_master",
              "role")
    rows: list[dict[str, Any]] = [{"id": s.pk, **{f: getattr(s, f) for f in fields}} for s in cluster.servers.all()]
    return rows or [{"name": "server-1", "preferred_master": True}, {"name": "server-2"}]


def wizard_servers(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    if request.method == "POST" and request.GET.get("add"):
        # Another row: keep every typed value (secrets excepted: they are never sent back to the browser).
        total = int(request.POST.get("servers-TOTAL_FORMS", "2") or 2)
        fields = ("id", "name", "address", "ssh_host", "ssh_port", "ssh_user", "auth", "privilege",
                  "preferred_master", "role")
        initial = [{f: request.POST.get(f"servers-{i}-{f}") for f in fields} for i in range(min(total, 199))]
        formset = ServerFormSet(initial=[*initial, {"name": f"server-{total + 1}", "ssh_user": "root"}],
                                cluster=cluster, prefix="servers")
    elif request.method == "POST":
        formset = ServerFormSet(request.POST, request.FILES, cluster=cluster, prefix="servers")
        if formset.is_valid():
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
            services.servers_save(cluster=cluster, rows=rows)
            return redirect("wizard-interface", pk=cluster.pk)
    else:
        formset = ServerFormSet(initial=_server_initial(cluster), cluster=cluster, prefix="servers")
    return _wizard(request, "wizard/step_servers.html", cluster, 1, formset=formset)


def wizard_interface(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = InterfaceForm(request.POST or None, initial={"interface": cluster.interface})
    if request.method == "POST" and form.is_valid():
        services.cluster_save(cluster=cluster, data={"interface": form.cleaned_data["interface"]})
        return redirect("wizard-review", pk=cluster.pk)
    return _wizard(request, "wizard/step_interface.html", cluster, 2, form=form,
                   unpinned=cluster.servers.filter(host_key="").exists())


@require_POST
def wizard_discover(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    if cluster.servers.filter(host_key="").exists():
        return render(request, "wizard/_host_keys.html", {
            "cluster": cluster, "offers": services.host_keys_fetch(cluster=cluster), "next": "discover"})
    found = services.interfaces_discover(cluster=cluster)
    return render(request, "wizard/_discovered.html", {"cluster": cluster, "found": found})


def wizard_review(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    return _wizard(request, "wizard/step_review.html", cluster, 3, plan=selectors.command_plan(cluster),
                   problems=services.cluster_readiness(cluster=cluster), servers=cluster.servers.all(),
                   password_set=bool(crypto.decrypt(cluster.carp_password_enc)))


@require_POST
def host_keys(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    return render(request, "wizard/_host_keys.html", {
        "cluster": cluster, "offers": services.host_keys_fetch(cluster=cluster), "next": request.POST.get("next", "")})


@require_POST
def host_keys_pin(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    confirmed = {int(k.split("-", 1)[1]): str(v) for k, v in request.POST.items() if k.startswith("fp-") and
                 k.split("-", 1)[1].isdigit()}
    try:
        pinned = services.host_keys_pin(cluster=cluster, confirmed=confirmed, user=request.user)
    except services.ServiceError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, "Pinned the host keys of " + (", ".join(pinned) or "no server") + ".")
    target = "wizard-interface" if request.POST.get("next") == "discover" else "wizard-review"
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(redirect(target, pk=cluster.pk).url)
    return redirect(target, pk=cluster.pk)


@require_POST
def run_create(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = RunForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown kind of run.")
        return redirect("cluster-detail", pk=pk)
    try:
        run = services.run_start(cluster=cluster, kind=form.cleaned_data["kind"], user=request.user,
                                 target=form.cleaned_data["target"], confirm=form.cleaned_data["confirm"])
    except services.ServiceError as e:
        messages.error(request, str(e))
        return redirect(request.POST.get("back") == "review" and "wizard-review" or "cluster-detail", pk=pk)
    return redirect("run-detail", pk=run.pk)


def _run_context(run: Run) -> dict[str, Any]:
    done, total = selectors.run_progress(run)
    return {"run": run, "rows": selectors.run_rows_by_server(run), "done": done, "total": total,
            "percent": int(100 * done / total) if total else 0}


def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("cluster"), pk=pk)
    return _wizard(request, "wizard/run_detail.html", run.cluster, 4, **_run_context(run))


def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("cluster"), pk=pk)
    response = render(request, "wizard/_run_progress.html", _run_context(run))
    if run.done:
        # 286 tells htmx to stop polling; the body still replaces the fragment one last time.
        stop = HttpResponseStopPolling(response.content)
        return stop
    return response
