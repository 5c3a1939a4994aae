"""Labels and badges, decided once: a status's words and its colour (NetBox: the enum carries its colour)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Cluster, Drill, Run, Step
from ..plan import status_label

register = template.Library()

# A value of Run.Status, Step.Status or Drill.Status -> its colour class.
TONES = {"ok": "ok", "changed": "changed", "failed": "failed", "interrupted": "failed", "running": "running",
         "pending": "pending", "skipped": "pending", "warning": "warning"}
CARP_TONES = {"MASTER": "ok", "BACKUP": "changed", "INIT": "failed", "unreachable": "failed"}


@register.simple_tag
def badge(tone: str, label: Any, extra: str = "") -> SafeString:
    """Any badge: a tone (ok, changed, failed, running, pending, info) and its words."""
    return format_html('<span class="badge badge-{}{}">{}</span>', tone, f" {extra}" if extra else "", label)


@register.simple_tag
def status_badge(obj: Run | Step | Drill, big: bool = False) -> SafeString:
    """A run's, step's or drill's status, in the same words and colour everywhere."""
    label = status_label(obj.status, obj.phase) if isinstance(obj, Step) else obj.get_status_display()
    return badge(TONES.get(obj.status, "pending"), label, "big" if big else "")


@register.simple_tag
def run_status_badge(status: str) -> SafeString:
    """A run's status from its value alone (the inventory annotates the last run's status)."""
    return badge(TONES.get(status, "pending"), Run.Status(status).label if status in Run.Status.values else status)


@register.filter
def duration_text(seconds: float) -> str:
    """3 h 12 min, 4 min 05 s, 2.3 s: how long, for people."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.simple_tag
def carp_badge(state: str | None) -> SafeString:
    shown = state or "unknown"
    return badge(CARP_TONES.get(shown, "pending"), shown)


@register.simple_tag
def health_badge(cluster: Cluster, never: str = "never checked") -> SafeString:
    if cluster.healthy:
        return badge("ok", "healthy")
    if cluster.healthy is False:
        return format_html('<span class="badge badge-failed" title="{}">degraded</span>', cluster.diagnosis)
    return badge("pending", never)
