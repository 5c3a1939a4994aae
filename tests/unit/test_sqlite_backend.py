"""The embedded SQLite backend: the write transactions of one process take turns on a lock instead of starving
in SQLite's busy handler, and a transaction that ends any way (commit, rollback, close) lets the next one in."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
from django.db import OperationalError, connections

from carpweb.sqlite_backend.base import DatabaseWrapper


def wrapper(path: Path, timeout: float) -> DatabaseWrapper:
    settings = copy.deepcopy(connections.settings["default"])
    if "sqlite" not in settings["ENGINE"]:
        pytest.skip("the embedded SQLite backend (this run is on another database)")
    settings.update(NAME=str(path), CONN_MAX_AGE=0)
    settings["OPTIONS"] = {**settings["OPTIONS"], "timeout": timeout}
    return DatabaseWrapper(settings, alias=f"scratch-{threading.get_ident()}")


def begin(conn: DatabaseWrapper) -> None:
    conn.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)  # what atomic() does


def end(conn: DatabaseWrapper, how: str) -> None:
    getattr(conn, how)()
    if how != "close":
        conn.set_autocommit(True)


@pytest.fixture(autouse=True)
def scratch_only(django_db_blocker):
    """These tests open their own scratch database files, never the test database."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    conn = wrapper(tmp_path / "scratch.sqlite3", 5)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE counter (n INTEGER)")
        cursor.execute("INSERT INTO counter VALUES (0)")
    conn.close()
    return tmp_path / "scratch.sqlite3"


def test_many_writers_of_one_process_take_turns_and_none_is_refused(db_file):
    errors: list[str] = []

    def writer() -> None:
        conn = wrapper(db_file, 1)  # stock Django fails here: a writer starves past 1 s
        try:
            for _ in range(15):
                begin(conn)
                with conn.cursor() as cursor:
                    cursor.execute("UPDATE counter SET n = n + 1")
                time.sleep(0.002)  # work inside the transaction: SQLite's lock stays taken meanwhile
                end(conn, "commit")
        except OperationalError as e:
            errors.append(str(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=writer) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    conn = wrapper(db_file, 5)
    with conn.cursor() as cursor:
        cursor.execute("SELECT n FROM counter")
        assert cursor.fetchone()[0] == 24 * 15 and errors == []
    conn.close()


@pytest.mark.parametrize("how", ["commit", "rollback", "close"])
def test_a_transaction_that_ends_lets_the_next_writer_in(db_file, how):
    first, second = wrapper(db_file, 0.5), wrapper(db_file, 0.5)
    begin(first)
    with first.cursor() as cursor:
        cursor.execute("UPDATE counter SET n = 7")
    end(first, how)
    begin(second)  # refused after 0.5 s if the first one still held the lock
    with second.cursor() as cursor:
        cursor.execute("UPDATE counter SET n = n + 1")
    end(second, "commit")
    second.close()
    first.close()


def test_a_writer_that_waits_past_the_busy_timeout_is_refused_as_sqlite_would(db_file):
    holder, waiter = wrapper(db_file, 5), wrapper(db_file, 0.3)
    begin(holder)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            begin(waiter)
    finally:
        end(holder, "rollback")
        holder.close()
        waiter.close()
