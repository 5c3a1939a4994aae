"""Use cases, one verb each: the only place that writes clusters, servers, pins, runs and users.

Modules by subject; the verbs are re-exported here for callers (views, commands, tasks).
"""

from .clusters import (
    APPLIED_FIELDS,
    applied_settings_changed,
    carp_password_generate,
    cluster_delete,
    cluster_merge,
    cluster_readiness,
    cluster_save,
    interfaces_seen,
    servers_save,
    service_ip_suggest,
    service_ips_save,
    shared_servers,
    unicast_offer,
)
from .errors import ConcurrentEdit, RoleRequired, ServiceError
from .fleet import NOT_READY, FleetItem, drift_check_all, fleet_start
from .fleet import Outcome as FleetOutcome
from .hostkeys import DiscoveredServer, HostKeyOffer, host_keys_fetch, host_keys_pin, interfaces_discover
from .notifications import DELIVER, DeliveryFailed, delivery_attempt, notice_send, target_add, target_delete
from .runs import run_execute, run_start, runs_reap
from .transitions import cluster_evaluate, event_record, flapping_calm_check, followed_nodes, node_heard, node_trouble
from .users import admin_account, must_change_password, password_change, user_create, user_set_active, user_set_role

__all__ = [
    "APPLIED_FIELDS", "DELIVER", "ConcurrentEdit", "RoleRequired",
    "DeliveryFailed", "DiscoveredServer", "HostKeyOffer", "ServiceError",
    "cluster_evaluate", "delivery_attempt", "event_record", "flapping_calm_check", "followed_nodes", "node_heard",
    "node_trouble",
    "notice_send", "target_add", "target_delete",
    "applied_settings_changed", "carp_password_generate", "cluster_delete", "cluster_merge", "cluster_readiness",
    "cluster_save",
    "NOT_READY", "FleetItem", "FleetOutcome", "drift_check_all", "fleet_start",
    "host_keys_fetch", "host_keys_pin", "interfaces_discover", "run_execute", "run_start",
    "runs_reap", "servers_save", "service_ips_save", "shared_servers", "service_ip_suggest", "unicast_offer",
    "interfaces_seen",
    "admin_account", "user_create", "user_set_role",
    "user_set_active",
    "password_change", "must_change_password",
]
