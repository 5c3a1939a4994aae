"""The one way execution waits for remote state to change: ask again until yes, the deadline, or a stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Stopped(Exception):
    """The run was stopped (time limit): give up at once."""


def until[T](check: Callable[[], T | None], *, seconds: float, every: float, stop: threading.Event) -> T | None:
    """Call `check` until it returns something truthy (returned), `seconds` pass (None), or `stop` is set
    (Stopped). Between calls it waits on `stop`, so a stopped run never sits out the interval."""
    deadline = time.monotonic() + seconds
    while True:
        if stop.is_set():
            raise Stopped
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            return None
        stop.wait(min(every, max(0.0, deadline - time.monotonic())))
