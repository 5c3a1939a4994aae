"""carpweb.waiting: the one wait, and what it says when it gives up."""

import time

import pytest

from carpweb.waiting import TimedOut, wait_until


def test_returns_what_the_predicate_found():
    seen = iter([None, 0, "", "here"])
    assert wait_until(lambda: next(seen), 1, "a value", every=0.001) == "here"


def test_gives_up_on_time_naming_what_it_waited_for():
    t0 = time.monotonic()
    with pytest.raises(TimedOut, match=r"gave up after 0.2 s waiting for the moon"):
        wait_until(lambda: False, 0.2, "the moon", every=0.05)
    assert 0.2 <= time.monotonic() - t0 < 1


def test_an_error_in_the_predicate_ends_the_wait_at_once():
    def dead() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(dead, 60, "a dead process")
