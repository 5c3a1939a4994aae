"""Database work from async code: in a pool thread with a healthy connection of its own, not in the one thread
Django's thread-sensitive calls share (where every watcher and poll of a web process would wait in line)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def in_thread[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    def fresh(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return fn(*args, **kwargs)

    return sync_to_async(fresh, thread_sensitive=False)
