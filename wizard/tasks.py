"""Celery tasks: thin wrappers over services."""

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from . import services
from .services.runs import RUN_EXECUTE


@shared_task(name=RUN_EXECUTE, acks_late=True, reject_on_worker_lost=True,  # type: ignore[call-overload]
             time_limit=settings.CARPWEB_RUN_TIMEOUT + 120)
def run_execute(run_id: int) -> str:
    # The runner stops a run at CARPWEB_RUN_TIMEOUT itself; the hard limit only catches a stuck worker.
    return services.run_execute(run_id=run_id).status


@shared_task(name=services.DELIVER, bind=True, max_retries=None, acks_late=True)  # type: ignore[call-overload]
def deliver(self: Any, delivery_id: int) -> None:
    # Then the delivery shows as failed; by default 5 retries after 2, 4, 8, 16, 32 s: about a minute.
    retries = settings.CARPWEB_NOTIFY_RETRIES
    try:
        services.delivery_attempt(delivery_id=delivery_id, last_try=self.request.retries >= retries)
    except services.DeliveryFailed as e:
        raise self.retry(countdown=settings.CARPWEB_NOTIFY_BACKOFF * 2 ** self.request.retries) from e


@shared_task(name="wizard.runs_reap")
def runs_reap() -> list[int]:
    return services.runs_reap()


@shared_task(name="wizard.drift_check_all")
def drift_check_all() -> list[int]:
    return services.drift_check_all()


@worker_ready.connect
def _reap_when_a_worker_starts(**kwargs: Any) -> None:
    """A worker that starts after one died ends that one's runs (embedded mode runs no beat to do it)."""
    services.runs_reap()
