"""Server-Sent Events as carpweb sends them: one event per change, its id the revision it shows. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RETRY_MS = 1000  # how soon a browser reconnects after the connection drops


@dataclass(frozen=True)
class Event:
    name: str  # plan, step, head, notice, cluster, end
    data: str  # HTML: out-of-band swaps by id
    rev: int | None  # the revision it shows; None for derived notices that are not resumed


def frames(events: Iterable[Event]) -> str:
    """The SSE text. Events come in revision order; only the last event of a revision carries the id, so a
    reconnect (Last-Event-ID) never resumes in the middle of a revision."""
    ordered = list(events)
    out = []
    for i, event in enumerate(ordered):
        lines = []
        following = ordered[i + 1].rev if i + 1 < len(ordered) else None
        if event.rev is not None and following != event.rev:
            lines.append(f"id: {event.rev}")
        lines.append(f"event: {event.name}")
        lines += [f"data: {line}" for line in (event.data.splitlines() or [""])]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def hello() -> str:
    """The first thing a stream sends: the retry delay, and an event that tells the page the stream works."""
    return f"retry: {RETRY_MS}\n\nevent: hello\ndata: \n\n"


KEEPALIVE = ": keepalive\n\n"  # a comment line: keeps proxies from closing an idle stream


def last_revision(events: Iterable[Event], default: int) -> int:
    return max((e.rev for e in events if e.rev is not None), default=default)


def resume_point(last_event_id: str | None, after: str | None) -> int:
    """Where a stream starts: after the later of the page's own revision and the last event the browser saw."""
    points = [int(v) for v in (last_event_id, after) if v and v.strip().isdigit()]
    return max(points, default=0)
