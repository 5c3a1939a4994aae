"""The one way carpweb's tools wait for something: ask again until yes, or give up saying what was waited for.

The runner's waits on CARP (wizard.execution.waits.until) add a stop signal to the same loop; the lab's own
hosts keep theirs (they run isolated from carpweb's code).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimedOut(Exception):
    """What was waited for did not come in time; the message says what it was."""


def wait_until[T](predicate: Callable[[], T | None], timeout: float, what: str, every: float = 0.05) -> T:
    """Call `predicate` until it returns something truthy (returned) or `timeout` seconds pass (TimedOut, naming
    `what`). An exception from `predicate` ends the wait at once (a process that died, say)."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimedOut(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
