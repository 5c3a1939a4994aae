"""The event-stream URLs as Django views: the polling fallback (`?format=fragments`) that returns the same
changes for pages whose stream cannot connect, and the streams themselves where Django serves them (runserver,
the test client). The deployed web processes answer streams in front of Django (wizard.live.asgi, routed by
carpweb/asgi.py), with the same subscriptions and events (wizard.live.streams)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from . import revisions
from .live import feeds, streams
from .live.sse import Event, last_revision, resume_point
from .roles import Role, has_role


def _watcher(request: HttpRequest) -> str:
    return streams.watcher(request.session.session_key or "", request.headers.get("Authorization", ""))


async def _viewer(request: HttpRequest) -> None:
    if request.headers.get("Authorization"):  # an API token, checked as the stream app checks it
        if not await sync_to_async(streams.may_watch)(_watcher(request)):
            raise PermissionDenied("The token is unknown, revoked or expired, or its user is not a viewer.")
        return
    user = await request.auser()
    if not await sync_to_async(has_role)(user, Role.VIEWER):
        raise PermissionDenied("This needs the viewer role.")


def _after(request: HttpRequest) -> int:
    return resume_point(request.headers.get("Last-Event-ID"), request.GET.get("after"))


async def _fragments(feed: feeds.Feed, after: int) -> HttpResponse:
    """The polling fallback: the same changes as HTML fragments, and where to ask from next time."""
    upto = await sync_to_async(revisions.current)()
    events: list[Event] = await sync_to_async(feed)(after, upto)
    response = HttpResponse("".join(e.data for e in events), content_type="text/html")
    response["X-Carpweb-After"] = str(max(upto, last_revision(events, after)))
    response["X-Carpweb-Done"] = "1" if any(e.name == "end" for e in events) else "0"
    response["Cache-Control"] = "no-store"
    return response


async def _answer(request: HttpRequest, kind: str, pk: int | None) -> HttpResponse | StreamingHttpResponse:
    await _viewer(request)
    after = _after(request)
    ids = streams.parse_ids(request.GET.get("ids", ""))
    subscription = await sync_to_async(streams.subscription_for)(kind, pk, ids, after)
    if subscription is None:
        raise Http404("nothing to follow here")
    if request.GET.get("format") == "fragments":
        return await _fragments(subscription.feed, after)
    # Under carpweb/asgi.py event streams never get here (its stream app serves them without a thread each);
    # a server that routes everything to Django still streams, a thread per stream.
    session_key = _watcher(request)

    async def still_allowed() -> bool:
        return bool(await sync_to_async(streams.may_watch)(session_key))

    response = StreamingHttpResponse(streams.events(subscription, after, still_allowed),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_GET
@login_not_required  # a stream answers 403 itself; an API token has no session to log in with
async def run_events(request: HttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    return await _answer(request, "run", pk)


@require_GET
@login_not_required  # a stream answers 403 itself; an API token has no session to log in with
async def cluster_events(request: HttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    return await _answer(request, "cluster", pk)


@require_GET
@login_not_required  # a stream answers 403 itself; an API token has no session to log in with
async def inventory_events(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _answer(request, "inventory", None)
