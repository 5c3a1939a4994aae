"""A live stream, whatever serves it: what a request subscribes to, who may watch, and the events it sends."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth

from ..models import Cluster, Run
from ..roles import Role, has_role
from ..services import tokens
from . import feeds
from .hub import HUB
from .sse import KEEPALIVE, Event, frames, hello

KEEPALIVE_SECONDS = 15
MAX_INVENTORY_IDS = 200


class TooManyStreams(Exception):
    """A stream refused by the caps (answered 429 with this sentence)."""


@dataclass
class Admission:
    """Caps on open streams in this web process: per session (a person's tabs) and in all. One event loop per
    process serves every stream, so plain counters suffice."""

    total: int = 0
    by_session: Counter[str] = field(default_factory=Counter)

    @contextlib.contextmanager
    def admit(self, session_key: str) -> Iterator[None]:
        who = hashlib.sha256(session_key.encode()).hexdigest()
        if self.by_session[who] >= settings.CARPWEB_STREAMS_PER_SESSION:
            raise TooManyStreams(f"This session already follows {self.by_session[who]} pages live (the limit is "
                                 f"CARPWEB_STREAMS_PER_SESSION={settings.CARPWEB_STREAMS_PER_SESSION}): close a tab.")
        if self.total >= settings.CARPWEB_STREAMS_PER_PROCESS:
            raise TooManyStreams("This web process follows as many live pages as it may "
                                 f"(CARPWEB_STREAMS_PER_PROCESS={settings.CARPWEB_STREAMS_PER_PROCESS}); try again "
                                 "shortly, or add web processes.")
        self.total += 1
        self.by_session[who] += 1
        try:
            yield
        finally:
            self.total -= 1
            self.by_session[who] -= 1
            if not self.by_session[who]:
                del self.by_session[who]


ADMISSION = Admission()


@dataclass(frozen=True)
class Subscription:
    """What one stream request follows: the hub's topic `key`, its feed of changes, and its notice."""

    key: tuple[object, ...]
    feed: feeds.Feed
    notice: Callable[[], str] | None = None
    ended: bool = False  # a finished run the page has seen to its end: the stream only says so


TOKEN = "token "  # noqa: S105 - the prefix of a watcher that is an API token, not a secret


def watcher(session_key: str, authorization: str) -> str:
    """Who follows a stream: an API token (`Authorization: Bearer carpweb_...`) when one is sent, else the
    session; what `may_watch` and the admission caps take."""
    scheme, _, raw = authorization.partition(" ")
    return TOKEN + raw.strip() if scheme.lower() == "bearer" and raw.strip() else session_key


def may_watch(session_key: str | None) -> bool:
    """Whether the watcher (a session, or an API token: see `watcher`) is a viewer (or more), with Django's own
    session and auth code, or the API's token check (a revoked or expired token ends the stream)."""
    if not session_key:
        return False
    if session_key.startswith(TOKEN):
        token = tokens.token_authenticate(session_key[len(TOKEN):])
        return token is not None and has_role(token.user, Role.VIEWER)
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return has_role(user, Role.VIEWER)


def parse_ids(text: str) -> frozenset[int]:
    return frozenset(int(w) for w in text.split(",")[:MAX_INVENTORY_IDS] if w.strip().isdigit())


def subscription_for(kind: str, pk: int | None, ids: frozenset[int], after: int) -> Subscription | None:
    """The subscription of a stream request, or None when what it watches does not exist."""
    if kind == "inventory":
        return Subscription(("inventory", ids), partial(feeds.inventory_events, ids))
    if pk is None:
        return None
    if kind == "run":
        run = Run.objects.filter(pk=pk).only("status", "rev").first()
        if run is None:
            return None
        return Subscription(("run", pk), partial(feeds.run_events, pk), partial(feeds.run_notice, pk),
                            ended=run.done and after >= run.rev)
    if kind == "cluster":
        if not Cluster.objects.filter(pk=pk).exists():
            return None
        return Subscription(("cluster", pk), partial(feeds.cluster_events, pk))
    return None


async def events(subscription: Subscription, after: int,
                 still_allowed: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[str]:
    """The stream's text: hello, then every change after `after` as it happens; ends after a run's end, or once
    `still_allowed` says no (logged out, deactivated, no longer a viewer): asked every KEEPALIVE_SECONDS, busy or
    quiet, so such a stream ends within that time."""
    yield hello()
    if subscription.ended:
        yield frames([Event("end", "", None)])
        return
    watcher = await HUB.watch(subscription.key, subscription.feed, after, subscription.notice)
    loop = asyncio.get_running_loop()
    next_check = loop.time() + KEEPALIVE_SECONDS
    try:
        while not watcher.dropped:
            try:
                text = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, next_check - loop.time()))
            except TimeoutError:
                text = KEEPALIVE
            if loop.time() >= next_check:
                next_check = loop.time() + KEEPALIVE_SECONDS
                if still_allowed is not None and not await still_allowed():
                    break
            if text == KEEPALIVE:
                yield KEEPALIVE
                continue
            if text is None:
                break
            yield text
            if "\nevent: end\n" in "\n" + text:
                break
    finally:
        await HUB.leave(watcher)
