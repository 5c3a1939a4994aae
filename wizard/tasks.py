"""Celery tasks: thin wrappers over services."""

from celery import shared_task
from django.conf import settings

from . import drift, runner


@shared_task(name="wizard.run_execute", acks_late=True, reject_on_worker_lost=True,  # type: ignore[call-overload]
             time_limit=settings.CARPWEB_RUN_TIMEOUT + 120)
def run_execute(run_id: int) -> str:
    # The runner stops a run at CARPWEB_RUN_TIMEOUT itself; the hard limit only catches a stuck worker.
    return runner.run_execute(run_id).status


@shared_task(name="wizard.runs_reap")
def runs_reap() -> list[int]:
    return runner.runs_reap()


@shared_task(name="wizard.drift_check_all")
def drift_check_all() -> list[int]:
    return drift.drift_check_all()
