"""Prometheus metrics, read from the database at each scrape (prometheus_client's custom collector)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from . import health
from .models import CarpEvent, Cluster, Run, Server, ServiceIP

STATES = ("INIT", "BACKUP", "MASTER")


class CarpwebCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("carpweb_carp_state", "1 for the node's current CARP state of a service IP (its "
                                  "latest transition, else the node's state at the last Check)",
                                  labels=["cluster", "node", "vhid", "interface", "service_ip", "state"])
        last: dict[tuple[int, int, str], str] = {}
        for server_id, vhid, iface, new in CarpEvent.objects.order_by("id").values_list(
                "server_id", "vhid", "interface", "new_state"):
            last[(server_id, vhid, iface)] = new
        sips = list(ServiceIP.objects.select_related("cluster"))
        nodes: dict[int, list[Server]] = {}
        for s in Server.objects.filter(role=Server.Role.NODE):
            nodes.setdefault(s.cluster_id, []).append(s)
        for sip in sips:
            for s in nodes.get(sip.cluster_id, []):
                now_state = last.get((s.pk, sip.vhid, sip.interface), s.carp_state)
                for name in STATES:
                    state.add_metric([sip.cluster.name, s.name, str(sip.vhid), sip.interface, ",".join(sip.hosts),
                                      name], 1.0 if now_state == name else 0.0)
        yield state
        transitions = CounterMetricFamily("carpweb_carp_transitions", "CARP transitions recorded",
                                          labels=["cluster", "node", "vhid"])
        for cluster, node, vhid, n in CarpEvent.objects.values_list("cluster__name", "node", "vhid").annotate(
                n=Count("id")):
            transitions.add_metric([cluster, node, str(vhid)], n)
        yield transitions
        age = GaugeMetricFamily("carpweb_check_age_seconds", "seconds since the cluster's last Check",
                                labels=["cluster"])
        now = timezone.now()
        for name, checked in Cluster.objects.exclude(checked_at=None).values_list("name", "checked_at"):
            if checked is not None:
                age.add_metric([name], (now - checked).total_seconds())
        yield age
        runs = GaugeMetricFamily("carpweb_runs", "runs kept, by kind and status (running ones end)",
                                 labels=["kind", "status"])
        for kind, status, n in Run.objects.values_list("kind", "status").annotate(n=Count("id")):
            runs.add_metric([kind, status], n)
        yield runs
        yield GaugeMetricFamily("carpweb_workers", "Celery workers that answered a ping", value=len(health.workers()))


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CarpwebCollector())
    return reg
