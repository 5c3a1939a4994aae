"""What changed since a revision, per topic, rendered once as events: a run's rows and header, a cluster's
page, rows of the inventory. Synchronous (database and templates); the hub calls them in a thread."""

from __future__ import annotations

from collections.abc import Callable

from django.template.loader import render_to_string

from .. import selectors
from ..models import Cluster, Run
from .sse import Event

Feed = Callable[[int, int], list[Event]]  # (after, upto) -> the events of revisions after < rev <= upto
RUN = "wizard/run_detail.html"


def run_events(run_id: int, after: int, upto: int) -> list[Event]:
    run = Run.objects.select_related("cluster").filter(pk=run_id).first()
    if run is None:
        return []
    if after < run.planned_rev:
        # The rows did not exist when the page was drawn: send them all at once, as they are now, once the
        # caller has reached the plan's revision (before that, a later call would send the plan again). Its id
        # is `upto`, what the rows are surely as new as (read before them), never a row's own revision: a row
        # read before a later change of another would have that change skipped. Changes after the id come
        # again as step events; the page skips what it already shows (data-rev).
        if run.planned_rev > upto:
            return []
        page = selectors.run_page(run)
        events = [Event("plan", render_to_string(RUN + "#plan_oob", {**page, "rev": upto}), upto)]
        rev = upto
    else:
        steps = list(run.steps.filter(rev__gt=after, rev__lte=upto).order_by("rev", "pk"))
        events = [Event("step", render_to_string(RUN + "#step_oob", {"s": s}), s.rev) for s in steps]
        if not steps and not after < run.rev <= upto:
            return []
        rev = max([s.rev for s in steps] + [run.rev if after < run.rev <= upto else 0])
        events.append(Event("head", render_to_string(RUN + "#head_oob", selectors.run_head(run)), rev))
    if run.done:
        events.append(Event("end", "", rev))
    return events


def run_notice(run_id: int) -> str:
    """The notice a waiting run shows (no worker answers, or its worker stopped beating); "" when none."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return ""
    return render_to_string(RUN + "#notice_oob", {"run": run, **selectors.run_notices(run)})


def cluster_events(cluster_id: int, after: int, upto: int) -> list[Event]:
    cluster = Cluster.objects.filter(pk=cluster_id, rev__gt=after, rev__lte=upto).first()
    if cluster is None:
        return []
    html = render_to_string("wizard/cluster_detail.html#live_oob", selectors.cluster_page(cluster))
    return [Event("cluster", html, cluster.rev)]


def inventory_events(cluster_ids: frozenset[int], after: int, upto: int) -> list[Event]:
    clusters = selectors.cluster_inventory().filter(pk__in=cluster_ids, rev__gt=after, rev__lte=upto)
    return [Event("cluster", render_to_string("wizard/cluster_list.html#row_oob", {"c": c}), c.rev)
            for c in sorted(clusters, key=lambda c: c.rev)]
