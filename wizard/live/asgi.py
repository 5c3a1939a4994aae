"""Event streams as a small ASGI app in front of Django (carpweb/asgi.py routes them here).

Django's ASGI handler keeps a thread for each request for as long as the request lasts, and an event stream
lasts as long as its page is open: 200 watchers would hold 200 idle threads. Here a stream is a coroutine: the
session is checked with Django's own session and auth code in the shared thread pool (a thread for the call,
not for the stream), then events flow from the hub until the page goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .db import in_thread
from .sse import resume_point
from .streams import ADMISSION, TooManyStreams, events, may_watch, parse_ids, subscription_for, watcher

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ROUTES = [(re.compile(r"^/runs/(\d+)/events/$"), "run"), (re.compile(r"^/clusters/(\d+)/events/$"), "cluster"),
          (re.compile(r"^/events/inventory/$"), "inventory")]
HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]  # nginx: pass events through as they come


def route(scope: Scope) -> tuple[str, int | None, dict[str, list[str]]] | None:
    """(kind, id, query) for an event-stream request; None for anything else (Django serves it, including
    the polling fallback `?format=fragments`)."""
    if scope.get("type") != "http" or scope.get("method") != "GET":
        return None
    query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
    if query.get("format"):
        return None
    for pattern, kind in ROUTES:
        if m := pattern.match(scope.get("path", "")):
            return kind, int(m.group(1)) if m.groups() else None, query
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def _pump(send: Send, body: AsyncIterator[str]) -> None:
    async with contextlib.aclosing(body) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _until_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    found = route(scope)
    assert found is not None
    kind, pk, query = found
    headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
    if not validate_host(split_domain_port(headers.get("host", ""))[0], settings.ALLOWED_HOSTS):
        await _plain(send, 400, "Bad Request (the Host header is not one of ALLOWED_HOSTS)")
        return
    cookie = SimpleCookie(headers.get("cookie", "")).get(settings.SESSION_COOKIE_NAME)
    session_key = watcher(cookie.value if cookie else "", headers.get("authorization", ""))
    if not await in_thread(may_watch)(session_key):
        await _plain(send, 403, "Log in as a viewer (or more), or send an API token, to follow this page live.")
        return
    try:
        with ADMISSION.admit(session_key):
            await _stream(send, receive, kind, pk, query, headers, session_key)
    except TooManyStreams as e:
        await _plain(send, 429, str(e))


async def _stream(send: Send, receive: Receive, kind: str, pk: int | None, query: dict[str, list[str]],
                  headers: dict[str, str], session_key: str) -> None:
    after = resume_point(headers.get("last-event-id"), (query.get("after") or [""])[0])
    subscription = await in_thread(subscription_for)(kind, pk, parse_ids((query.get("ids") or [""])[0]), after)
    if subscription is None:
        await _plain(send, 404, "Nothing to follow here.")
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    pump = asyncio.create_task(_pump(send, events(subscription, after, lambda: in_thread(may_watch)(session_key))))
    gone = asyncio.create_task(_until_gone(receive))
    await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in (pump, gone):
        task.cancel()
    await asyncio.gather(pump, gone, return_exceptions=True)
