"""Notices of cluster events and their deliveries: a JSON POST to a webhook, or an email through Django's
backend. Each delivery is a Celery task on its own queue with retries and backoff: a slow or dead target delays
nothing else, and its failure is shown on the Notifications page."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from carpweb.celery import app

from .. import audit, crypto, links
from ..models import Cluster, Delivery, Notice, NotificationTarget
from . import webhooks

DELIVER = "wizard.deliver"  # the Celery task (wizard.tasks) that calls delivery_attempt
WEBHOOK_DEADLINE = 5.0  # seconds one attempt may take in all: resolving, connecting, sending, the answer
log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """This attempt did not get through; the message says why."""


def target_add(*, address: str, cluster: Cluster | None = None, header_name: str = "",
               header_value: str = "") -> NotificationTarget:
    """A webhook URL or an email address (validated by NotificationTargetForm) that notices go to."""
    kind = NotificationTarget.Kind.EMAIL if "@" in address and "://" not in address else \
        NotificationTarget.Kind.WEBHOOK
    target = NotificationTarget.objects.create(kind=kind, address=address, cluster=cluster, header_name=header_name,
                                               header_value_enc=crypto.encrypt(header_value))
    audit.record("notify.add", obj=target, cluster=cluster,
                 after={"address": target.shown, "header": f"{header_name}: {audit.MASKED}" if header_name else ""})
    return target


def target_delete(*, target: NotificationTarget) -> None:
    audit.record("notify.delete", obj=target, cluster=target.cluster, before={"address": target.shown})
    target.delete()


def notice_send(*, cluster: Cluster, kind: str, node: str = "", vhid: int | None = None, old_state: str = "",
                new_state: str = "", reason: str = "", time: datetime | None = None) -> Notice:
    """Record one cluster event and queue one delivery per target (sent after the transaction commits)."""
    notice = Notice.objects.create(cluster=cluster, kind=kind, node=node, vhid=vhid, old_state=old_state,
                                   new_state=new_state, reason=reason, time=time or timezone.now())
    targets = NotificationTarget.objects.filter(enabled=True).filter(Q(cluster=None) | Q(cluster=cluster))
    for target in targets:
        delivery = Delivery.objects.create(notice=notice, target=target)
        transaction.on_commit(partial(app.send_task, DELIVER, args=[delivery.pk]))
    return notice


def payload(notice: Notice) -> dict[str, Any]:
    """What a webhook receives: cluster, node, vhid, old, new, reason, time and a link."""
    return {"event": notice.kind, "summary": summary(notice), "cluster": notice.cluster.name, "node": notice.node,
            "vhid": notice.vhid, "old": notice.old_state, "new": notice.new_state, "reason": notice.reason,
            "time": notice.time.isoformat(),
            "link": settings.CARPWEB_BASE_URL.rstrip("/") + links.cluster_page(notice.cluster_id)}


def summary(notice: Notice) -> str:
    where = f"{notice.cluster.name}"
    if notice.kind == Notice.Kind.MASTER_CHANGED:
        return f"{where}: {notice.node} is MASTER now ({notice.old_state} -> {notice.new_state}, {notice.reason})"
    return f"{where}: {notice.get_kind_display()}" + (f": {notice.reason}" if notice.reason else "")


def _post(target: NotificationTarget, body: dict[str, Any]) -> None:
    headers = {target.header_name: crypto.decrypt(target.header_value_enc)} if target.header_name else {}
    try:
        webhooks.post(target.address, body, headers, WEBHOOK_DEADLINE)
    except webhooks.WebhookRefused as e:
        raise DeliveryFailed(str(e)) from None


def one_line(text: str, limit: int = 150) -> str:
    """A mail subject: one line (a header with a line break is refused by the mail backend), cut to `limit`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def delivery_attempt(*, delivery_id: int, last_try: bool) -> None:
    """One attempt; raises DeliveryFailed (the task retries) unless it got through or this was the last try."""
    delivery = Delivery.objects.select_related("notice__cluster", "target").get(pk=delivery_id)
    if delivery.status == Delivery.Status.DELIVERED:
        return
    delivery.attempts += 1
    notice, target = delivery.notice, delivery.target
    try:
        if target.kind == NotificationTarget.Kind.WEBHOOK:
            _post(target, payload(notice))
        else:
            body = json.dumps(payload(notice), indent=1)
            send_mail(one_line(f"[carpweb] {summary(notice)}"), body, None, [target.address])
    except Exception as e:  # every failure ends this attempt with a sentence; none leaves it pending
        message = str(e) if isinstance(e, DeliveryFailed) else \
            "could not hand the mail to the mail server" if target.kind == NotificationTarget.Kind.EMAIL else \
            "the delivery failed unexpectedly"
        if not isinstance(e, DeliveryFailed):
            log.warning("delivery %s to target %s: %s", delivery.pk, target.pk, type(e).__name__)
        delivery.status = Delivery.Status.FAILED if last_try else Delivery.Status.RETRYING
        delivery.last_error = message[:500]
        delivery.save(update_fields=["attempts", "status", "last_error", "updated"])
        if not last_try:
            raise DeliveryFailed(message) from None
        return
    delivery.status, delivery.last_error = Delivery.Status.DELIVERED, ""
    delivery.save(update_fields=["attempts", "status", "last_error", "updated"])
