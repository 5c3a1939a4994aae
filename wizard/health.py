"""Health: does the database answer, does the broker, which workers answer a ping, when beat last ran.

Read by GET /health/ (no login), `manage.py health`, the inventory's worker banner and the run page.
Nothing here reveals a secret: errors are reduced to their first line with credentials cut out of URLs.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from carpweb.celery import app

PING_TIMEOUT = 1.0  # seconds a worker has to answer
WORKERS_CACHE_SECONDS = 5  # pages poll; a ping without an answer costs PING_TIMEOUT, so it is not repeated often
_CACHE_KEY = "carpweb:health:workers"
log = logging.getLogger(__name__)
_ping_lock = threading.Lock()
_CREDENTIALS = re.compile(r"(\w+://)[^@/\s]*@")


def _sentence(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return _CREDENTIALS.sub(r"\1***@", text)[:300]


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as e:  # any failure is the answer
        return _sentence(e)
    return "ok"


def broker_status() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as e:
        return _sentence(e)
    return "ok"


def _ping(limit: int | None) -> list[str]:
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT, limit=limit) or []
    except Exception:  # an unreachable broker means no worker answers
        replies = []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        log.warning("no Celery worker answered a ping within %g s: runs wait until one starts "
                    "(celery -A carpweb worker; scripts/start runs one)", PING_TIMEOUT)
    return names


def _cached(key: str, limit: int | None, fresh: bool) -> list[str]:
    """One ping at a time per process: concurrent requests wait for its answer instead of pinging too."""
    value = None if fresh else cache.get(key)
    if value is not None:
        return list(value)
    with _ping_lock:
        value = None if fresh else cache.get(key)
        if value is None:
            value = _ping(limit)
            cache.set(key, value, WORKERS_CACHE_SECONDS)
    return list(value)


def workers(*, fresh: bool = False) -> list[str]:
    """Names of the Celery workers that answered a ping within PING_TIMEOUT (cached a few seconds)."""
    return _cached(_CACHE_KEY, None, fresh)


def worker_answers() -> bool:
    """Whether any worker answers: what pages need, and quick (the ping ends at the first reply)."""
    known = cache.get(_CACHE_KEY)
    if known is not None:
        return bool(known)
    return bool(_cached(_CACHE_KEY + ":any", 1, fresh=False))


def beat_last_run() -> str | None:
    """When celery beat last sent a scheduled task (django-celery-beat keeps it per task), or None."""
    from django_celery_beat.models import PeriodicTask

    try:
        last = PeriodicTask.objects.exclude(last_run_at=None).order_by("-last_run_at").values_list(
            "last_run_at", flat=True).first()
    except Exception:  # the database answer is reported on its own
        return None
    return last.isoformat() if last else None


@dataclass
class Health:
    database: str
    broker: str
    workers: list[str] = field(default_factory=list)
    beat: str | None = None
    checked: str = ""

    @property
    def healthy(self) -> bool:
        return self.database == "ok" and self.broker == "ok" and bool(self.workers)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}

    def as_public_dict(self) -> dict[str, Any]:
        """What anyone may know: each part ok or failing, and how many workers answer; no names, no errors."""
        return {"healthy": self.healthy, "database": "ok" if self.database == "ok" else "failing",
                "broker": "ok" if self.broker == "ok" else "failing", "workers": len(self.workers)}


def health_check() -> Health:
    database = database_status()
    broker = broker_status()
    return Health(database=database, broker=broker, workers=workers() if broker == "ok" else [],
                  beat=beat_last_run() if database == "ok" else None, checked=timezone.now().isoformat())
