"""CARP transitions as the collector reads them: each recorded once, the node's state kept current, and the
cluster judged (one master, none, several) for notices, once its transitions have settled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import revisions
from ..carp import transition_log
from ..models import CarpEvent, Cluster, Notice, Server
from .notifications import notice_send

UNREACHABLE_AFTER = 60.0  # seconds a node may be out of reach before a notice says so
FRESH = timedelta(seconds=2.5 * transition_log.HEARTBEAT_SECONDS)  # a node heard within this counts when judging


def followed_nodes() -> dict[int, str]:
    """The nodes whose transitions are followed: CARP nodes of clusters whose service IP is configured (their
    devd rule is installed), with a pinned key. The value names the session: a change restarts it."""
    servers = Server.objects.filter(role=Server.Role.NODE, cluster__service_ip_configured=True).exclude(host_key="")
    return {s.pk: f"{s.ssh_user}@{s.ssh_host}:{s.ssh_port}/{s.privilege}/{s.host_key_fingerprint}"
            for s in servers}


def event_record(*, server_id: int, line: str) -> int | None:
    """Record one line of a node's event log; the cluster to judge when it was one of its transitions."""
    event = transition_log.parse_line(line)
    if event is None:
        return None
    server = Server.objects.select_related("cluster").get(pk=server_id)
    cluster = server.cluster
    now = timezone.now()
    with revisions.change() as rev:
        Server.objects.filter(pk=server.pk).update(events_epoch=event.epoch, events_seq=event.seq,
                                                   events_heard_at=now, events_error="")
        ours = set(cluster.service_ips.values_list("vhid", "interface"))
        if not event.malformed and (event.vhid, event.interface) not in ours:
            return None  # a vhid carpweb does not manage (configured by hand): not this cluster's business
        # A malformed line is kept (its place in the node's log says a transition happened), shown as such.
        try:
            with transaction.atomic():
                CarpEvent.objects.create(cluster=cluster, server=server, node=server.name, vhid=event.vhid,
                                         interface=event.interface, old_state=event.old, new_state=event.new,
                                         reason=event.reason, node_time=event.node_time, epoch=event.epoch,
                                         seq=event.seq)
        except IntegrityError:
            return None  # read again after a reconnect: recorded already
        if event.new in transition_log.STATES:
            Server.objects.filter(pk=server.pk).update(carp_state=event.new)
        Cluster.objects.filter(pk=cluster.pk).update(last_transition_at=event.node_time or now, rev=rev)
    return cluster.pk


def node_heard(*, server_id: int) -> None:
    """The node answers (the collector says so every half minute, and at once when it was out of reach)."""
    server = Server.objects.get(pk=server_id)
    Server.objects.filter(pk=server_id).update(events_heard_at=timezone.now(), events_error="")
    if server.events_error:  # it was shown as out of reach: back in the state its last transition left it
        last = CarpEvent.objects.filter(server=server).order_by("-id").values_list("new_state", flat=True).first()
        with revisions.change() as rev:
            Server.objects.filter(pk=server_id, carp_state="unreachable").update(carp_state=last or "")
            revisions.touch_cluster(server.cluster_id, rev)


def node_trouble(*, server_id: int, why: str, seconds: float) -> None:
    """The collector cannot follow a node: after UNREACHABLE_AFTER seconds, one notice per outage."""
    server = Server.objects.select_related("cluster").get(pk=server_id)
    if seconds < UNREACHABLE_AFTER or server.events_error:
        return
    with revisions.change() as rev:
        Server.objects.filter(pk=server.pk).update(events_error=why, carp_state="unreachable")
        revisions.touch_cluster(server.cluster_id, rev)
        notice_send(cluster=server.cluster, kind=Notice.Kind.NODE_UNREACHABLE, node=server.name, new_state="",
                    reason=why)


def situation_of(cluster: Cluster, heard: dict[int, datetime], now: datetime) -> tuple[str | None, list[str]]:
    """master:NAME, split (several MASTERs) or none, counting only the nodes the collector heard lately (a node
    whose link went down still shows its last state); None when it cannot be told yet. And the masters.

    Several MASTERs count as a split brain only when each was heard a heartbeat after the cluster's latest
    transition arrived: an old master whose link was just cut is still "heard lately" for a few seconds."""
    nodes = list(cluster.servers.filter(role=Server.Role.NODE))
    fresh = [n for n in nodes if n.pk in heard and now - heard[n.pk] <= FRESH]
    masters = [n for n in fresh if n.carp_state == "MASTER"]
    names = sorted(n.name for n in masters)
    if len(masters) == 1:
        return f"master:{names[0]}", names
    if masters:
        latest = CarpEvent.objects.filter(cluster=cluster).order_by("-received").values_list("received", flat=True)
        arrived = latest.first()
        after = arrived + timedelta(seconds=transition_log.HEARTBEAT_SECONDS) if arrived else None
        return ("split" if after is None or all(heard[n.pk] >= after for n in masters) else None), names
    return ("none" if len(fresh) == len(nodes) else None), names


def _transitions(rows: Any) -> list[transition_log.Transition]:
    return [transition_log.Transition(e.node, e.old_state, e.new_state, e.reason, e.node_time or e.received, e.vhid)
            for e in rows]


def _losses_lately(cluster: Cluster) -> int:
    since = timezone.now() - timedelta(minutes=settings.CARPWEB_FLAP_MINUTES)
    return transition_log.losses(_transitions(CarpEvent.objects.filter(cluster=cluster, received__gte=since)))


def cluster_evaluate(*, cluster_id: int, heard: dict[int, datetime]) -> bool:
    """Judge a cluster once its transitions settled: a notice when who is master changed since the last one, and
    one when a master lost the VIP and took it back within the window (the end state equals the start state, but
    clients saw a failover). The first look at a cluster with one master is silent. More than CARPWEB_FLAP_LOSSES
    losses of MASTER within CARPWEB_FLAP_MINUTES send one "flapping" notice, then nothing until it calms down
    (`flapping_calm_check`). False when it cannot be told yet (a node not heard lately): asked again shortly."""
    cluster = Cluster.objects.get(pk=cluster_id)
    situation, masters = situation_of(cluster, heard, timezone.now())
    if situation is None:
        return False
    window = list(CarpEvent.objects.filter(cluster=cluster, pk__gt=cluster.events_judged).order_by("id"))
    judged = window[-1].pk if window else cluster.events_judged
    changed = situation != cluster.situation
    with revisions.change():
        Cluster.objects.filter(pk=cluster.pk).update(situation=situation, events_judged=judged)
        if cluster.flapping:
            return True  # grouped: the flapping notice said it; the calm one will say when it ends
        if window and _losses_lately(cluster) > settings.CARPWEB_FLAP_LOSSES:
            Cluster.objects.filter(pk=cluster.pk).update(flapping=True)
            notice_send(cluster=cluster, kind=Notice.Kind.FLAPPING, node=", ".join(masters),
                        reason=f"{_losses_lately(cluster)} losses of MASTER within {settings.CARPWEB_FLAP_MINUTES:g} "
                        "minutes; further failovers are not notified one by one until it calms down")
        elif changed and not (situation.startswith("master:") and not cluster.situation):
            _notice_for(cluster, situation, masters, _moved(cluster, cluster.events_judged))
        elif not changed and len(masters) == 1:
            episodes = transition_log.reverted_episodes(_transitions(window), masters[0])
            if episodes:
                _notice_reverted(cluster, episodes)
    return True


def flapping_calm_check() -> list[int]:
    """Clusters marked flapping whose losses fell back within the limit: one "calm again" notice each."""
    calmed = []
    for cluster in Cluster.objects.filter(flapping=True):
        if _losses_lately(cluster) <= settings.CARPWEB_FLAP_LOSSES:
            with revisions.change():
                Cluster.objects.filter(pk=cluster.pk).update(flapping=False)
                notice_send(cluster=cluster, kind=Notice.Kind.CALM,
                            reason=f"at most {settings.CARPWEB_FLAP_LOSSES} losses of MASTER in the last "
                            f"{settings.CARPWEB_FLAP_MINUTES:g} minutes; failovers are notified one by one again")
            calmed.append(cluster.pk)
    return calmed


def addresses_of(cluster: Cluster, vhids: set[tuple[int, str]] | None = None) -> str:
    """The service IPs' addresses (of these (vhid, interface) pairs; all when None), for a notice's sentence."""
    hosts = [h for sip in cluster.service_ips.all() if vhids is None or (sip.vhid, sip.interface) in vhids
             for h in sip.hosts]
    return ", ".join(hosts) or "its service IPs"


def _moved(cluster: Cluster, since_id: int) -> tuple[str, int | None]:
    """The addresses whose vhids had transitions after event `since_id` (what a failover moved), and the vhid
    when it was one (a webhook's `vhid`; null for several)."""
    vhids = set(CarpEvent.objects.filter(cluster=cluster, pk__gt=since_id).values_list("vhid", "interface"))
    return addresses_of(cluster, vhids or None), next(iter(vhids))[0] if len(vhids) == 1 else None


def _notice_reverted(cluster: Cluster, episodes: list[transition_log.Episode]) -> Notice:
    """One notice for what the window held: who lost which addresses, for how long, why, and who held them."""
    moved = addresses_of(cluster)
    parts = [f"{e.node} lost {moved} for {e.seconds:.1f} s ({e.reason or 'no reason logged'}); "
             + (f"{', '.join(e.holders)} held them meanwhile" if e.holders else "no node held them meanwhile")
             for e in episodes]
    return notice_send(cluster=cluster, kind=Notice.Kind.FAILOVER_REVERTED, node=episodes[0].node,
                       old_state="MASTER", new_state="MASTER", reason=" ".join(f"{p}." for p in parts)[:1000],
                       time=episodes[0].lost)


def _notice_for(cluster: Cluster, situation: str, masters: list[str], moved_vhid: tuple[str, int | None]) -> Notice:
    """One notice per cluster event, whatever the number of service IPs: it names the addresses involved."""
    moved, vhid = moved_vhid
    if situation == "split":
        return notice_send(cluster=cluster, kind=Notice.Kind.SPLIT_BRAIN, node=", ".join(masters), vhid=vhid,
                           new_state="MASTER", reason=f"{' and '.join(masters)} are all MASTER ({moved})")
    if situation == "none":
        return notice_send(cluster=cluster, kind=Notice.Kind.NO_MASTER, vhid=vhid,
                           reason=f"no node is MASTER ({moved})")
    master = masters[0]
    last = CarpEvent.objects.filter(cluster=cluster, node=master, new_state="MASTER").order_by("-id").first()
    why = last.reason if last else ""
    return notice_send(cluster=cluster, kind=Notice.Kind.MASTER_CHANGED, node=master, vhid=vhid,
                       old_state=last.old_state if last else "", new_state="MASTER",
                       reason=f"{master} now holds {moved}" + (f" ({why})" if why else ""),
                       time=last.node_time if last and last.node_time else None)
