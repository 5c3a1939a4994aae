"""The hub: one per web process. It learns of new revisions (PostgreSQL LISTEN/NOTIFY, or an indexed read of
the counter every 50 ms in embedded mode), asks each watched topic's feed once for what changed, and hands the
events to every watcher of that topic. A watcher costs a queue, not a thread or a query; one that leaves costs
nothing afterwards, and one that cannot keep up is dropped (its browser reconnects and resumes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection

from .. import revisions
from .db import in_thread
from .feeds import Feed
from .sse import Event, frames

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05  # embedded mode: how often the counter is read
SAFETY_POLL_SECONDS = 1.0  # with NOTIFY: a read now and then, in case a notification was missed
NOTICE_SECONDS = 5.0  # how often derived notices (no worker, stalled worker) are looked at
QUEUE_BATCHES = 200  # batches a slow watcher may fall behind before it is dropped


@dataclass(eq=False)
class Watcher:
    """One open stream: what it has been sent up to, and the text waiting to be written to it."""

    last: int
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_BATCHES))
    dropped: bool = False

    def offer(self, events: list[Event], shared: str) -> None:
        fresh = [e for e in events if e.rev is None or e.rev > self.last]
        if not fresh:
            return
        text = shared if len(fresh) == len(events) else frames(fresh)
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True
            return
        self.last = max([self.last, *(e.rev for e in fresh if e.rev is not None)])


@dataclass(eq=False)
class Topic:
    key: Hashable
    feed: Feed
    notice: Callable[[], str] | None = None
    watchers: set[Watcher] = field(default_factory=set)
    last_notice: str = ""

    def deliver(self, events: list[Event]) -> None:
        if not events:
            return
        shared = frames(events)
        for watcher in list(self.watchers):
            watcher.offer(events, shared)


class Hub:
    def __init__(self) -> None:
        self.topics: dict[Hashable, Topic] = {}
        self.rev = -1  # the revision every topic has been brought up to; -1 until the first read
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    @property
    def watchers(self) -> int:
        return sum(len(t.watchers) for t in self.topics.values())

    async def watch(self, key: Hashable, feed: Feed, after: int, notice: Callable[[], str] | None = None) -> Watcher:
        """A new watcher of `key`, sent first what changed after `after` (up to what the hub has seen). The long
        catch-up (a page opened on an old revision) is read outside the hub's lock, so one slow newcomer never
        holds up every other stream; only what happened meanwhile is read under it."""
        async with self.lock:
            if self.rev < 0:
                self.rev = await in_thread(revisions.current)()
            seen = self.rev
        watcher = Watcher(last=after)
        if after < seen:
            catch_up = await in_thread(feed)(after, seen)
            watcher.offer(catch_up, frames(catch_up))
        async with self.lock:
            if max(after, seen) < self.rev:  # the hub moved on while the catch-up was read
                meanwhile = await in_thread(feed)(max(after, seen), self.rev)
                watcher.offer(meanwhile, frames(meanwhile))
            topic = self.topics.setdefault(key, Topic(key, feed, notice))
            topic.watchers.add(watcher)
            watcher.last = max(watcher.last, self.rev)
            self._ensure_running()
        return watcher

    async def leave(self, watcher: Watcher) -> None:
        async with self.lock:
            for key, topic in list(self.topics.items()):
                topic.watchers.discard(watcher)
                if not topic.watchers:
                    del self.topics[key]

    def _ensure_running(self) -> None:
        """Start the loop if it is not running (called under the lock, as is the loop's decision to end)."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _still_watched(self) -> bool:
        async with self.lock:
            if not self.topics:
                self.task = None
                return False
            return True

    async def _advance(self, upto: int) -> None:
        async with self.lock:
            for topic in list(self.topics.values()):
                try:
                    topic.deliver(await in_thread(topic.feed)(self.rev, upto))
                except Exception:  # one topic's failure must not stop the others
                    log.exception("live feed %s failed", topic.key)
            self.rev = max(self.rev, upto)

    async def _notices(self) -> None:
        async with self.lock:
            for topic in self.topics.values():
                if topic.notice is None:
                    continue
                text = await in_thread(topic.notice)()
                if text != topic.last_notice:
                    topic.last_notice = text
                    topic.deliver([Event("notice", text, None)])

    async def _run(self) -> None:
        source = ListenSource() if connection.vendor == "postgresql" else PollSource()
        next_notice = 0.0
        try:
            while await self._still_watched():
                latest = await source.wait(self.rev)
                if latest > self.rev:
                    await self._advance(latest)
                loop_time = asyncio.get_running_loop().time()
                if loop_time >= next_notice:
                    next_notice = loop_time + NOTICE_SECONDS
                    await self._notices()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the live hub stopped; the next watcher starts it again")
            self.task = None
        finally:
            await source.close()


class PollSource:
    """Embedded mode: read the counter every POLL_SECONDS (one indexed read, whatever the number of watchers)."""

    async def wait(self, seen: int) -> int:
        await asyncio.sleep(POLL_SECONDS)
        return await in_thread(revisions.current)()

    async def close(self) -> None:
        return None


class ListenSource:
    """PostgreSQL: LISTEN on the revision channel; every new revision is NOTIFYed when its transaction commits."""

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        settings_dict = connection.settings_dict
        self.conn = await psycopg.AsyncConnection.connect(
            dbname=settings_dict["NAME"], user=settings_dict.get("USER") or None,
            password=settings_dict.get("PASSWORD") or None, host=settings_dict.get("HOST") or None,
            port=settings_dict.get("PORT") or None, autocommit=True)
        await self.conn.execute(f"LISTEN {revisions.CHANNEL}")
        return self.conn

    async def wait(self, seen: int) -> int:
        conn = self.conn or await self._connect()
        latest = seen
        with contextlib.suppress(TimeoutError):
            async for note in conn.notifies(timeout=SAFETY_POLL_SECONDS, stop_after=1):
                latest = max(latest, int(note.payload))
        if latest <= seen:  # nothing (or a missed notification): read the counter itself
            latest = await in_thread(revisions.current)()
        return latest

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


HUB = Hub()
