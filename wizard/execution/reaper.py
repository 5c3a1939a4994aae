"""Runs whose worker died: a heartbeat while a run executes, and the reaper that marks silent runs interrupted."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from .. import revisions
from ..models import Run, Step

HEARTBEAT_SECONDS = 5
STALE_SECONDS = 30  # no heartbeat for this long: the worker is gone


def stale_since() -> datetime:
    return timezone.now() - timedelta(seconds=STALE_SECONDS)


@contextlib.contextmanager
def heartbeat(run_id: int) -> Iterator[None]:
    """Beat every HEARTBEAT_SECONDS while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            Run.objects.filter(pk=run_id).update(heartbeat=timezone.now())
        connection.close()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def mark_interrupted() -> list[int]:
    """Mark as interrupted the runs whose worker stopped beating (killed, or the machine died); their ids. What
    that means beyond the rows (the audit log) is the services' (services.runs_reap)."""
    stale = stale_since()
    dead = list(Run.objects.filter(status=Run.Status.RUNNING, heartbeat__lt=stale).values_list("pk", flat=True))
    reaped = []
    for pk in dead:
        with revisions.change() as rev:
            if not Run.objects.filter(pk=pk, status=Run.Status.RUNNING, heartbeat__lt=stale).update(
                    status=Run.Status.INTERRUPTED, finished=timezone.now(),
                    summary=f"interrupted: the worker stopped (no heartbeat for {STALE_SECONDS} s); start the run "
                            "again"):
                continue
            Step.objects.filter(run_id=pk, status__in=Step.UNFINISHED).update(
                status=Step.Status.SKIPPED, message="not finished: the worker stopped", live="", rev=rev)
            revisions.touch_run(pk, rev)
        reaped.append(pk)
    return reaped
