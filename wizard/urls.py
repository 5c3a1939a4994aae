"""The wizard's URLs."""

from django.urls import path

from . import views, views_audit, views_health, views_live, views_notify, views_users

urlpatterns = [
    path("", views.cluster_list, name="cluster-list"),
    path("clusters/new/", views.wizard_cluster, name="wizard-new"),
    path("clusters/check-all/", views.check_all, name="check-all"),
    path("clusters/<int:pk>/", views.cluster_detail, name="cluster-detail"),
    path("clusters/<int:pk>/delete/", views.cluster_delete, name="cluster-delete"),
    path("audit/", views_audit.audit_list, name="audit-list"),
    path("audit/verify/", views_audit.audit_verify, name="audit-verify"),
    path("users/", views_users.user_list, name="user-list"),
    path("account/password/", views_users.password_change, name="password-change"),
    path("account/tokens/", views_users.token_list, name="token-list"),
    path("clusters/<int:pk>/wizard/cluster/", views.wizard_cluster, name="wizard-cluster"),
    path("clusters/<int:pk>/wizard/servers/", views.wizard_servers, name="wizard-servers"),
    path("clusters/<int:pk>/wizard/interface/", views.wizard_interface, name="wizard-interface"),
    path("clusters/<int:pk>/wizard/service-ips/", views.wizard_service_ips, name="wizard-service-ips"),
    path("clusters/<int:pk>/wizard/discover/", views.wizard_discover, name="wizard-discover"),
    path("clusters/<int:pk>/wizard/review/", views.wizard_review, name="wizard-review"),
    path("clusters/<int:pk>/hostkeys/", views.host_keys, name="host-keys"),
    path("clusters/<int:pk>/hostkeys/pin/", views.host_keys_pin, name="host-keys-pin"),
    path("clusters/<int:pk>/runs/", views.run_create, name="run-create"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/events/", views_live.run_events, name="run-events"),
    path("clusters/<int:pk>/events/", views_live.cluster_events, name="cluster-events"),
    path("events/inventory/", views_live.inventory_events, name="inventory-events"),
    path("notifications/", views_notify.notification_list, name="notification-list"),
    path("notifications/<int:pk>/delete/", views_notify.notification_delete, name="notification-delete"),
    path("health/", views_health.health, name="health"),
    path("health/workers/", views_health.worker_banner, name="worker-banner"),
]
