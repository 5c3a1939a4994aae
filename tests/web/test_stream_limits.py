"""Event streams have limits: a cap per session and per process (429 with a sentence), and a stream whose person
is deactivated, demoted below viewer or logged out ends at its next keepalive. Driven through the ASGI stream app
itself (wizard/live/asgi.py) with a real session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.helpers import make_cluster
from wizard import services
from wizard.live import asgi, hub, streams

pytestmark = pytest.mark.django_db(transaction=True)


def _session(name: str, role: str = "viewer") -> tuple[User, str]:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    client = Client()
    client.force_login(user)
    return user, client.cookies[settings.SESSION_COOKIE_NAME].value


class Stream:
    """One GET of a cluster's event stream, as a browser would open it."""

    def __init__(self, cluster_id: int, session_key: str, token: str = "") -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self.gone = asyncio.Event()
        credential = (b"authorization", f"Bearer {token}".encode()) if token else \
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())
        scope = {"type": "http", "method": "GET", "path": f"/clusters/{cluster_id}/events/", "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1"), credential]}
        self.task = asyncio.create_task(asgi.serve(scope, self._receive, self._send))

    async def _receive(self) -> MutableMapping[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body").decode()

    async def close(self) -> None:
        self.gone.set()
        await asyncio.wait_for(self.task, 5)


async def _until(condition, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
def cluster():
    return make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")


def test_streams_are_capped_per_session_and_per_process(cluster, settings):
    settings.CARPWEB_STREAMS_PER_SESSION, settings.CARPWEB_STREAMS_PER_PROCESS = 2, 3
    _, first = _session("first")
    _, second = _session("second")

    async def scenario() -> None:
        open_ = [Stream(cluster.pk, first), Stream(cluster.pk, first)]
        await _until(lambda: all(s.status == 200 for s in open_))
        refused = Stream(cluster.pk, first)
        await refused.task
        assert refused.status == 429 and "CARPWEB_STREAMS_PER_SESSION=2" in refused.body
        open_.append(Stream(cluster.pk, second))
        await _until(lambda: open_[-1].status == 200)
        full = Stream(cluster.pk, second)
        await full.task
        assert full.status == 429 and "CARPWEB_STREAMS_PER_PROCESS=3" in full.body
        await open_[0].close()
        again = Stream(cluster.pk, second)  # one left: there is room again
        await _until(lambda: again.status == 200)
        for s in (*open_[1:], again):
            await s.close()
        assert streams.ADMISSION.total == 0 and not streams.ADMISSION.by_session

    asyncio.run(scenario())
    hub.HUB.__init__()  # type: ignore[misc]  # the hub belongs to this test's event loop


@pytest.mark.parametrize("change", ["deactivate", "demote-below-viewer", "log-out", "deactivate-while-busy"])
def test_a_stream_ends_at_its_next_keepalive_once_its_person_may_no_longer_watch(cluster, monkeypatch, change):
    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.3)
    admin = User.objects.create_superuser("admin", password="pw-for-tests-1")
    viewer, key = _session("vera")

    async def scenario() -> float:
        stream = Stream(cluster.pk, key)
        await _until(lambda: stream.status == 200)
        await asyncio.sleep(0.5)
        assert not stream.task.done()  # still allowed: keepalives flow
        busy = asyncio.create_task(_keep_changing(cluster.pk)) if change.endswith("busy") else None
        if change.startswith("deactivate"):
            await asyncio.to_thread(services.user_set_active, actor=admin, user_id=str(viewer.pk), active=False)
        elif change == "demote-below-viewer":
            await asyncio.to_thread(lambda: viewer.groups.clear())
        else:
            from importlib import import_module
            store = import_module(settings.SESSION_ENGINE).SessionStore(key)
            await asyncio.to_thread(store.delete)
        started = time.monotonic()
        sent_before = len(stream.sent)
        await asyncio.wait_for(stream.task, 5)
        if busy is not None:
            busy.cancel()
            assert len(stream.sent) > sent_before  # events were flowing: no quiet keepalive was needed to end it
        return time.monotonic() - started

    took = asyncio.run(scenario())
    hub.HUB.__init__()  # type: ignore[misc]
    assert took < 1.0, took  # with the real 15 s keepalive: within 15 s


async def _keep_changing(cluster_id: int) -> None:
    """The cluster's page gets something new every 50 ms (a busy stream: it never falls quiet)."""
    from wizard import revisions

    def touch() -> None:
        with revisions.change() as rev:
            revisions.touch_cluster(cluster_id, rev)

    while True:
        await asyncio.to_thread(touch)
        await asyncio.sleep(0.05)


def test_the_catch_up_of_a_newcomer_does_not_hold_the_hub(cluster):
    """A watcher's catch-up reads outside the hub's lock: while a slow one is read, the lock is free."""
    seen_locked: list[bool] = []

    def slow_feed(after: int, upto: int) -> list:
        seen_locked.append(hub.HUB.lock.locked())
        time.sleep(0.3)
        return []

    async def scenario() -> None:
        hub.HUB.rev = 10
        watcher = await hub.HUB.watch(("test",), slow_feed, 0)
        await hub.HUB.leave(watcher)
        if hub.HUB.task:
            hub.HUB.task.cancel()

    asyncio.run(scenario())
    hub.HUB.__init__()  # type: ignore[misc]
    assert seen_locked and seen_locked[0] is False


def test_an_api_token_follows_a_stream_until_it_is_revoked(cluster, monkeypatch):
    """The API's bearer token opens the same event stream as the page; revoking it ends the stream at the next
    keepalive, and a bad token gets 403 at once."""
    from wizard.services import tokens

    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.3)
    viewer, _ = _session("tina")
    token, text = tokens.token_create(user=viewer, read_only=True)

    async def scenario() -> None:
        refused = Stream(cluster.pk, "", token=text[:-1] + ("0" if text[-1] != "0" else "1"))
        await refused.task
        assert refused.status == 403
        stream = Stream(cluster.pk, "", token=text)
        await _until(lambda: stream.status == 200)
        await asyncio.sleep(0.5)
        assert not stream.task.done() and "event:" in stream.body
        await asyncio.to_thread(tokens.token_revoke, key_id=token.key_id)
        await asyncio.wait_for(stream.task, 5)

    asyncio.run(scenario())
    hub.HUB.__init__()  # type: ignore[misc]
