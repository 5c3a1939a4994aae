"""Helpers for tests that drive carpweb against the lab."""

from __future__ import annotations

from carpweb import waiting
from lab.world import Lab
from wizard import crypto, services
from wizard.models import Cluster, Run, Server, ServiceIP, Step


def lab_cluster(lab: Lab, *, name: str = "web", users=("root", "root"), privileges=("root", "root"),
                passwords=(None, None), interface: str = "em0", subnet: str = "192.0.2.0/24",
                addresses=("192.0.2.11", "192.0.2.12"), pin: bool = True, probe: bool = False,
                password: str = "", master_advskew: int = 0, configure_service_ip: bool = False) -> Cluster:
    """A cluster of the lab's server-1 and server-2, created through the same services the wizard uses."""
    cluster = services.cluster_save(cluster=None, data={
        "name": name, "subnet": subnet, "gateway": "192.0.2.1", "vip": "192.0.2.100", "vip_prefix": 32,
        "vhid": 1, "advbase": 1, "interface": interface, "master_advskew": master_advskew,
        "configure_service_ip": configure_service_ip}, carp_password=password)
    with open(lab.key_path) as f:
        key = f.read()
    rows = []
    for i, host in enumerate(("server-1", "server-2")):
        info = lab.host(host)
        rows.append({"name": host, "address": addresses[i], "ssh_host": "127.0.0.1", "ssh_port": info.ssh_port,
                     "ssh_user": users[i], "auth": "password" if passwords[i] else "key",
                     "secret": passwords[i] or key, "privilege": privileges[i], "preferred_master": i == 0})
    if probe:
        info = lab.host("client")
        rows.append({"name": "client", "address": info.address, "ssh_host": "127.0.0.1", "ssh_port": info.ssh_port,
                     "ssh_user": "root", "auth": "key", "secret": key, "privilege": "root",
                     "preferred_master": False, "role": "probe"})
    services.servers_save(cluster=cluster, rows=rows)
    if pin:
        offers = services.host_keys_fetch(cluster=cluster)
        services.host_keys_pin(cluster=cluster, confirmed={o.server.pk: o.fingerprint for o in offers})
    return cluster


THREE_SERVICE_IPS = [{"interface": "em0", "vhid": 10, "addresses": ["192.0.2.100/32"]},
                     {"interface": "em0", "vhid": 11, "addresses": ["2001:db8::100/64"]},
                     {"interface": "em0", "vhid": 12, "addresses": ["192.0.2.101/32"], "announce": "unicast"}]


def three_service_ips(lab: Lab) -> Cluster:
    """The lab's two servers (and the client as probe) carrying IPv4 multicast, IPv6 and IPv4 unicast service IPs."""
    cluster = lab_cluster(lab, probe=True, configure_service_ip=True)
    Cluster.objects.filter(pk=cluster.pk).update(subnet6="2001:db8::/64")
    for name in ("server-1", "server-2"):
        Server.objects.filter(cluster=cluster, name=name).update(address6=lab.config.address6(lab.host(name).address))
    services.service_ips_save(cluster=cluster, rows=THREE_SERVICE_IPS)
    return Cluster.objects.get(pk=cluster.pk)


def make_cluster(*, vip: str = "", vhid: int = 1, interface: str = "em0", **fields) -> Cluster:
    """A cluster row (as Cluster.objects.create) with, when `vip` is given, its one service IP on `interface`."""
    cluster = Cluster.objects.create(interface=fields.pop("cluster_interface", interface), **fields)
    if vip:
        ServiceIP.objects.create(cluster=cluster, interface=interface, vhid=vhid, addresses=[f"{vip}/32"],
                                 password_enc=crypto.encrypt("TestCarpPass1"))
    return cluster


def wait_until(condition, limit: float = 30.0, every: float = 0.05, what: str = ""):
    """carpweb.waiting.wait_until for tests: a wait that gives up fails the test (AssertionError) saying what it
    waited for."""
    try:
        return waiting.wait_until(condition, limit, what or getattr(condition, "__name__", str(condition)), every)
    except waiting.TimedOut as e:
        raise AssertionError(str(e)) from None


def wait_run(run: Run, limit: float = 60) -> Run:
    """Until the run is done; if it is not within `limit`, the failure shows where it stands: its status and
    every row not finished, with what it last showed."""
    def finished() -> bool:
        run.refresh_from_db()
        return run.done

    try:
        waiting.wait_until(finished, limit, f"{run} to finish", every=0.1)
    except waiting.TimedOut as e:
        open_rows = [f"{s.where} {s.name}: {s.status} {s.message!r} live={s.live[-300:]!r}"
                     for s in run.steps.filter(status__in=Step.UNFINISHED).order_by("pk")]
        raise AssertionError(f"{e}; the run is {run.status}, heartbeat {run.heartbeat}; rows not finished:\n"
                             + "\n".join(open_rows)) from None
    return run


def statuses(run: Run, server: str) -> dict[str, str]:
    return {s.name: s.status for s in run.steps.filter(server_name=server)}


def messages(run: Run, server: str) -> str:
    return " ".join(s.message for s in run.steps.filter(server_name=server))
