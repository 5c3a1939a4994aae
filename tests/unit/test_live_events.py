"""Live events as data: the SSE text, where a stream resumes, what a watcher is sent, what a feed renders."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import make_cluster
from wizard import revisions
from wizard.live import feeds
from wizard.live.hub import Watcher
from wizard.live.sse import Event, frames, resume_point
from wizard.models import Run, Step


def test_only_the_last_event_of_a_revision_carries_its_id():
    text = frames([Event("step", "<a>", 7), Event("head", "<b>", 7), Event("step", "<c>", 9)])
    assert text == ("event: step\ndata: <a>\n\n"
                    "id: 7\nevent: head\ndata: <b>\n\n"
                    "id: 9\nevent: step\ndata: <c>\n\n")


def test_multi_line_data_and_events_without_a_revision():
    assert frames([Event("notice", "one\ntwo", None)]) == "event: notice\ndata: one\ndata: two\n\n"
    assert frames([Event("end", "", 3)]) == "id: 3\nevent: end\ndata: \n\n"


@pytest.mark.parametrize(("last_event_id", "after", "expected"), [
    (None, None, 0), ("12", None, 12), (None, "40", 40), ("50", "40", 50), ("7", "40", 40), ("x", "3; drop", 0)])
def test_a_stream_resumes_after_the_later_of_the_page_and_the_last_event(last_event_id, after, expected):
    assert resume_point(last_event_id, after) == expected


def test_a_watcher_gets_only_what_it_has_not_seen_and_is_dropped_when_it_falls_behind():
    async def scenario() -> None:
        watcher = Watcher(last=5)
        events = [Event("step", "a", 4), Event("step", "b", 6), Event("notice", "n", None)]
        watcher.offer(events, frames(events))
        assert watcher.queue.get_nowait() == frames(events[1:]) and watcher.last == 6
        small = Watcher(last=0, queue=asyncio.Queue(1))
        small.offer([Event("step", "a", 1)], "x")
        small.offer([Event("step", "b", 2)], "y")
        assert small.dropped and small.last == 1  # its browser reconnects and resumes after 1

    asyncio.run(scenario())


@pytest.fixture
def run(db):
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    return Run.objects.create(cluster=cluster, kind="verify")


def _step(run: Run, name: str, status: str, rev: int) -> Step:
    return Step.objects.create(run=run, server_name="server-1", position=Step.objects.filter(run=run).count(),
                               phase="verify", name=name, title=name, status=status, rev=rev, message=f"{name} said")


def test_a_plan_the_page_has_not_seen_comes_whole(run):
    _step(run, "module-loaded", "ok", 5)
    Run.objects.filter(pk=run.pk).update(planned_rev=5, rev=5, status="running")
    events = feeds.run_events(run.pk, after=3, upto=5)
    assert [e.name for e in events] == ["plan"] and events[0].rev == 5
    # The rows' container comes whole and says what it is as new as, so a page skips a plan it already shows.
    assert '<div id="run-rows" data-rev="5" hx-swap-oob="true">' in events[0].data
    assert "module-loaded said" in events[0].data


def test_a_plan_claims_only_what_it_surely_shows_so_a_later_change_is_not_skipped(run):
    """The hub read revision 8, a row changed at 10, then the plan was drawn. The plan may claim only 8: drawn
    a moment earlier it would show the row before 10, and a claim of 10 would skip that change for good (seen in
    the browser test as a row stuck at "running")."""
    _step(run, "module-loaded", "ok", 10)
    Run.objects.filter(pk=run.pk).update(planned_rev=5, rev=5, status="running")
    assert [(e.name, e.rev) for e in feeds.run_events(run.pk, after=3, upto=8)] == [("plan", 8)]
    assert ("step", 10) in [(e.name, e.rev) for e in feeds.run_events(run.pk, after=8, upto=10)]


def test_a_plan_newer_than_what_the_caller_reached_waits_for_it_so_it_comes_once(run):
    """The hub woke for revision 4, the run was planned at 5 meanwhile. Sent now with id 5 while the hub moved
    only to 4, the next wake-up (after=4, upto=9) would send the plan a second time, with a newer id the page
    cannot skip: seen in CI as every row of the plan reaching the page twice."""
    _step(run, "module-loaded", "ok", 5)
    Run.objects.filter(pk=run.pk).update(planned_rev=5, rev=5, status="running")
    assert feeds.run_events(run.pk, after=3, upto=4) == []
    assert [(e.name, e.rev) for e in feeds.run_events(run.pk, after=4, upto=9)] == [("plan", 9)]
    assert not [e for e in feeds.run_events(run.pk, after=9, upto=12) if e.name == "plan"]


def test_then_one_event_per_changed_row_and_the_header(run):
    first, second = _step(run, "module-loaded", "ok", 6), _step(run, "carp-allow", "running", 8)
    Run.objects.filter(pk=run.pk).update(planned_rev=5, rev=5, status="running")
    events = feeds.run_events(run.pk, after=6, upto=8)
    assert [(e.name, e.rev) for e in events] == [("step", 8), ("head", 8)]
    assert f'id="s{second.pk}-status"' in events[0].data and f'id="s{first.pk}-status"' not in events[0].data
    assert 'data-step-status="running"' in events[0].data and 'hx-swap-oob="true"' in events[0].data
    assert "<details" not in events[0].data  # the row's details element is never swapped: it stays open
    assert feeds.run_events(run.pk, after=8, upto=8) == []


def test_a_finished_run_ends_its_stream(run):
    _step(run, "module-loaded", "ok", 6)
    Run.objects.filter(pk=run.pk).update(planned_rev=5, rev=9, status="ok", summary="nothing to change")
    events = feeds.run_events(run.pk, after=6, upto=9)
    assert [e.name for e in events] == ["head", "end"] and "nothing to change" in events[0].data


@pytest.mark.django_db(transaction=True)
def test_revisions_are_taken_in_order_and_shared_within_one_change():
    with revisions.change() as first, revisions.change() as nested:
        assert nested == first
    with revisions.change() as second:
        pass
    assert second == first + 1 and revisions.current() == second


def test_a_run_planned_while_its_page_is_drawn_is_drawn_as_planned_and_its_plan_not_sent_again(run, admin_client,
                                                                                                 monkeypatch):
    """The page read the run before it was planned and its rows after: it drew the plan but claimed less than
    the plan's revision, so the stream sent the plan again and every row reached the page twice (seen in CI)."""
    from wizard import views

    draw = views.selectors.run_page

    def planned_meanwhile(r: Run) -> dict:
        if not Step.objects.filter(run=r).exists():
            with revisions.change() as rev:
                _step(r, "module-loaded", "pending", rev)
                Run.objects.filter(pk=r.pk).update(planned_rev=rev)
        return draw(r)

    monkeypatch.setattr(views.selectors, "run_page", planned_meanwhile)
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    planned = Run.objects.get(pk=run.pk).planned_rev
    assert planned and f'data-after="{planned}"' in page and f'<div id="run-rows" data-rev="{planned}">' in page
    assert not [e for e in feeds.run_events(run.pk, after=planned, upto=revisions.current()) if e.name == "plan"]
