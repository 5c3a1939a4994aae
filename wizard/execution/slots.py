"""A bound on the SSH connections one worker process holds at once (CARPWEB_SSH_MAX_CONNECTIONS).

A run takes the slots of all its servers together before it connects and gives them back when it ends, so a
fleet of 1,000 nodes never opens 1,000 sockets at once, and two runs can never each hold half of what both need.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Slots:
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, timeout: float) -> int:
        """Wait up to `timeout` for n slots (a run wider than the limit takes the whole limit); the number taken,
        0 when they did not come free in time."""
        n = max(1, min(n, self.limit))
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + n <= self.limit, timeout):
                return 0
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self, n: int, timeout: float) -> Iterator[bool]:
        """The slots of n connections for the block; False when they did not come free within `timeout`."""
        taken = self.acquire(n, timeout)
        try:
            yield taken > 0
        finally:
            if taken:
                self.release(taken)
