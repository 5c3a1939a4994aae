"""Who was master when, and for how long: a cluster's MASTER spans from its CARP events, with drills and
maintenance marked. Reads only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import CarpEvent, Cluster, Run

# One colour per node, none of them a state's (green MASTER, blue BACKUP) or a marker's (red drill, amber
# maintenance), so a bar is never read as a state.
PALETTE = ["#6f42c1", "#0d7377", "#c2185b", "#5d4037", "#3949ab", "#546e7a"]
WIDTH = 1000  # the bar's drawing units
MIN_WINDOW = timedelta(minutes=10)
MAINTENANCE = [Run.Kind.MAINTENANCE_ON, Run.Kind.MAINTENANCE_OFF]


@dataclass
class Span:
    node: str
    start: datetime
    end: datetime | None  # None: still MASTER
    reason: str = ""  # how it became MASTER
    ended: str = ""  # what it went to, and why: "INIT (hardware interface down)"
    colour: str = ""
    x: float = 0.0
    width: float = 0.0
    lane: str = ""  # the service IP: "vhid 10 · 192.0.2.100"

    @property
    def seconds(self) -> float:
        return ((self.end or timezone.now()) - self.start).total_seconds()


@dataclass
class Marker:
    time: datetime
    kind: str  # drill, handover, maintenance
    label: str
    x: float = 0.0


@dataclass
class Lane:
    """One service IP's bar: who was MASTER of its vhid when."""

    label: str
    spans: list[Span] = field(default_factory=list)


@dataclass
class Timeline:
    start: datetime
    end: datetime
    spans: list[Span] = field(default_factory=list)  # every lane's, by start
    lanes: list[Lane] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    legend: dict[str, str] = field(default_factory=dict)
    full: bool = True  # the whole window (nothing happened in it), or narrowed to what did


def _spans(cluster: Cluster, since: datetime, vhid: int, interface: str) -> list[Span]:
    """One vhid's MASTER spans; the master at the window's start comes from the last MASTER event before it."""
    own = CarpEvent.objects.filter(cluster=cluster, vhid=vhid, interface=interface)
    earlier = own.filter(
        Q(node_time__lt=since) | Q(node_time=None, received__lt=since)).order_by(
        Coalesce("node_time", "received"), "id").filter(new_state="MASTER").last()
    events = own.filter(
        Q(node_time__gte=since) | Q(node_time=None, received__gte=since)).order_by(Coalesce("node_time", "received"),
                                                                                   "id")
    open_spans: dict[str, Span] = {}
    spans: list[Span] = []
    for event in ([earlier] if earlier else []) + list(events):
        when = event.node_time or event.received
        if event.new_state == "MASTER" and event.node not in open_spans:
            open_spans[event.node] = Span(event.node, when, None, event.reason)
        elif event.new_state != "MASTER" and event.node in open_spans:
            span = open_spans.pop(event.node)
            span.end, span.ended = when, event.new_state + (f" ({event.reason})" if event.reason else "")
            spans.append(span)
    return sorted(spans + list(open_spans.values()), key=lambda s: s.start)


def _x(when: datetime, start: datetime, end: datetime) -> float:
    total = (end - start).total_seconds()
    return max(0.0, min(WIDTH, WIDTH * (when - start).total_seconds() / total)) if total > 0 else 0.0


def _window(cluster: Cluster, end: datetime, hours: int) -> datetime:
    """The bar's start: the last `hours`, narrowed to what happened in them (at least MIN_WINDOW, with a
    margin), so a failover a minute ago is a visible block rather than a hairline at the right edge."""
    start = end - timedelta(hours=hours)
    times = [t for t in (
        CarpEvent.objects.filter(cluster=cluster, node_time__gte=start).order_by("node_time")
        .values_list("node_time", flat=True).first(),
        cluster.drills.filter(started__gte=start).order_by("started").values_list("started", flat=True).first(),
        cluster.runs.filter(created__gte=start, kind__in=MAINTENANCE).order_by("created")
        .values_list("created", flat=True).first()) if t is not None]
    if not times:
        return start
    earliest = min(times)
    margin = max((end - earliest) * 0.05, timedelta(seconds=30))
    return max(start, min(earliest - margin, end - MIN_WINDOW))


def cluster_timeline(cluster: Cluster, hours: int = 24) -> Timeline:
    end = timezone.now()
    start = _window(cluster, end, hours)
    timeline = Timeline(start, end, full=start == end - timedelta(hours=hours))
    for sip in cluster.service_ips.all():
        label = f"vhid {sip.vhid} · {', '.join(sip.hosts)}"
        lane = Lane(label, _spans(cluster, start, sip.vhid, sip.interface or cluster.interface))
        for span in lane.spans:
            span.lane = label
        timeline.lanes.append(lane)
        timeline.spans += lane.spans
    timeline.spans.sort(key=lambda s: s.start)
    # Colours follow the nodes' order (preferred master first), not who happened to be master first.
    order = list(cluster.servers.order_by("-preferred_master", "name").values_list("name", flat=True))
    for span in sorted(timeline.spans, key=lambda s: order.index(s.node) if s.node in order else len(order)):
        timeline.legend.setdefault(span.node, PALETTE[len(timeline.legend) % len(PALETTE)])
    for span in timeline.spans:
        span.colour = timeline.legend[span.node]
        span.x = _x(max(span.start, start), start, end)
        span.width = max(1.0, _x(span.end or end, start, end) - span.x)
    for drill in cluster.drills.filter(started__gte=start):
        if drill.kind == drill.Kind.HANDOVER:
            lost = sum(p.get("lost") or 0 for p in drill.probes)
            to = drill.master_during or "?"
            timeline.markers.append(Marker(drill.started, "handover", f"planned handover to {to} "
                                           f"({drill.get_status_display()}, {lost} probes lost)"))
            continue
        outage = f", outage {drill.outage_s:.2f} s" if drill.outage_s is not None else ""
        timeline.markers.append(Marker(drill.started, "drill", f"failover drill ({drill.get_status_display()}"
                                       f"{outage})"))
    for run in cluster.runs.filter(created__gte=start, kind__in=MAINTENANCE).select_related("target"):
        node = run.target.name if run.target else "?"
        timeline.markers.append(Marker(run.created, "maintenance", f"{run.get_kind_display()}: {node}"))
    for marker in timeline.markers:
        marker.x = _x(marker.time, start, end)
    timeline.markers.sort(key=lambda m: m.time)
    return timeline
