"""The Celery worker under yappi (CPU clock, every thread), for bench/peers.py --profile.

    yappi_worker.py OUT -A carpweb worker ...

Signal DUMP writes OUT (the functions by total, then by own CPU time); CLEAR starts the count again. Both are
real-time signals: Celery keeps SIGUSR1 (it prints the threads' stacks) and SIGUSR2 for itself.
"""

from __future__ import annotations

import signal
import sys

DUMP, CLEAR = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2
COLUMNS = {0: ("name", 100), 1: ("ncall", 10), 2: ("tsub", 9), 3: ("ttot", 9)}


def dump(out: str) -> None:
    import yappi

    stats = yappi.get_func_stats()
    with open(out, "w") as f:
        stats.sort("ttot").print_all(out=f, columns=COLUMNS)
        f.write("\n\nby own time\n")
        stats.sort("tsub").print_all(out=f, columns=COLUMNS)
    yappi.clear_stats()


def main() -> None:
    import yappi

    out = sys.argv.pop(1)
    signal.signal(CLEAR, lambda *_: yappi.clear_stats())
    signal.signal(DUMP, lambda *_: dump(out))
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    from celery.__main__ import main as celery

    sys.argv[0] = "celery"
    celery()


if __name__ == "__main__":
    main()
