"""Django's SQLite backend, with the write transactions of one process queued on a lock.

SQLite lets one connection write at a time (carpweb's transactions BEGIN IMMEDIATE). A writer that finds the
database busy sleeps in SQLite's busy handler, up to 100 ms at a time, and tries again, so with dozens of runs in
flight in one worker (a thread per run and per server, all writing step rows) an unlucky writer starved past the
busy timeout: 1 of 100 concurrent setups failed with "database is locked". Here the writers of one process
wait on a lock that is handed over as soon as a transaction ends; other processes (web, collector) still meet
SQLite's busy handler, as before. A writer that waits longer than the busy timeout fails as SQLite would.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

WRITER = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    holds_writer = False

    def _start_transaction_under_autocommit(self) -> None:
        if not WRITER.acquire(timeout=float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))):
            raise OperationalError("database is locked (another thread of this process kept writing)")
        self.holds_writer = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        if self.holds_writer:
            self.holds_writer = False
            WRITER.release()

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._release_writer()
