"""Revisions: every change a page shows live takes the next number of one global counter, in its transaction.

The counter's row is taken first in the transaction, so its lock orders the commits by revision: a reader that
has seen revision N has seen every change up to N, and a stream resumes after the last revision it sent, losing
and repeating nothing. On PostgreSQL the new number is also NOTIFYed (delivered at commit) to wake the streams.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.db import connection, transaction

from .models import Cluster, Revision, Run

CHANNEL = "carpweb_rev"
_local = threading.local()


def _take() -> int:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wizard_revision SET n = n + 1 WHERE id = 1 RETURNING n")
        row = cursor.fetchone()
        if row is None:  # the migration makes the row; a flushed database (tests) starts it again
            Revision.objects.get_or_create(pk=1, defaults={"n": 0})
            cursor.execute("UPDATE wizard_revision SET n = n + 1 WHERE id = 1 RETURNING n")
            row = cursor.fetchone()
        assert row is not None
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(row[0])])
    return int(row[0])


@contextlib.contextmanager
def change() -> Iterator[int]:
    """A transaction whose changes pages show: yields its revision. Nested uses share the outer one's."""
    current = getattr(_local, "rev", None)
    if current is not None:
        yield current
        return
    with transaction.atomic():
        _local.rev = _take()
        try:
            yield _local.rev
        finally:
            _local.rev = None


def current() -> int:
    """The latest committed revision (what a page rendered now has seen)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT n FROM wizard_revision WHERE id = 1")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def touch_cluster(cluster_id: int, rev: int) -> None:
    """The cluster's page and its inventory row show something new (states, runs, drills, settings)."""
    Cluster.objects.filter(pk=cluster_id).update(rev=rev)


def touch_run(run: Run | int, rev: int) -> None:
    """A run's header changed (status, summary); its cluster's page and inventory row show its latest run."""
    run_id = run if isinstance(run, int) else run.pk
    Run.objects.filter(pk=run_id).update(rev=rev)
    cluster_id = Run.objects.filter(pk=run_id).values_list("cluster_id", flat=True).first() if isinstance(run, int) \
        else run.cluster_id
    if cluster_id is not None:
        touch_cluster(cluster_id, rev)
