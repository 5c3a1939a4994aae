"""Celery tasks: thin wrappers over services."""

from celery import shared_task

from . import drift, runner


@shared_task(name="wizard.run_execute", acks_late=True, reject_on_worker_lost=True)
def run_execute(run_id: int) -> str:
    return runner.run_execute(run_id).status


@shared_task(name="wizard.drift_check_all")
def drift_check_all() -> list[int]:
    return drift.drift_check_all()
