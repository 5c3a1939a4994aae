"""Celery tasks: thin wrappers over services."""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from . import drift, runner


@shared_task(name="wizard.run_execute", acks_late=True, reject_on_worker_lost=True,  # type: ignore[call-overload]
             soft_time_limit=settings.CARPWEB_RUN_TIMEOUT, time_limit=settings.CARPWEB_RUN_TIMEOUT + 60)
def run_execute(run_id: int) -> str:
    try:
        return runner.run_execute(run_id).status
    except SoftTimeLimitExceeded:
        return runner.run_timed_out(run_id)


@shared_task(name="wizard.runs_reap")
def runs_reap() -> list[int]:
    return runner.runs_reap()


@shared_task(name="wizard.drift_check_all")
def drift_check_all() -> list[int]:
    return drift.drift_check_all()
