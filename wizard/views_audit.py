"""The audit log's pages: the list with its filters, its exports (CSV, JSON) and the chain check."""

from __future__ import annotations

import csv
import json
from typing import Any

from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from . import audit, selectors
from .forms import AuditFilterForm
from .roles import Role, require_role

EXPORT_FIELDS = ["id", "ts", "actor_name", "request_id", "source_ip", "action", "object_type", "object_id",
                 "object_repr", "cluster_name", "before", "after", "link", "prev_hash", "hash", "token_id"]


@require_role(Role.VIEWER)
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = AuditFilterForm(request.GET or None)
    entries = selectors.audit_entries(form.cleaned_data if form.is_valid() else {})
    fmt = request.GET.get("format")
    if fmt == "csv":
        return export_csv(entries)
    if fmt == "json":
        return export_json(entries)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "wizard/audit_list.html", {"form": form, "page": page, "query": query.urlencode()})


def _rows(entries: Any) -> Any:
    for e in entries.values_list(*EXPORT_FIELDS).iterator(chunk_size=2000):
        yield dict(zip(EXPORT_FIELDS, e, strict=True))


class _Echo:
    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: Any) -> Any:
    """A cell a spreadsheet would read as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe (OWASP)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(entries: Any) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Any:
        yield writer.writerow(EXPORT_FIELDS)
        for row in _rows(entries):
            yield writer.writerow([spreadsheet_safe(json.dumps(row[f]) if f in ("before", "after") else row[f])
                                   for f in EXPORT_FIELDS])

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="carpweb-audit.csv"'
    return response


def export_json(entries: Any) -> StreamingHttpResponse:
    def chunks() -> Any:
        yield "["
        for i, row in enumerate(_rows(entries)):
            yield ("," if i else "") + json.dumps(row, cls=DjangoJSONEncoder)  # times in ISO 8601
        yield "]"

    response = StreamingHttpResponse(chunks(), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="carpweb-audit.json"'
    return response


@require_role(Role.VIEWER)
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """A POST: each intact walk leaves a checkpoint (a write), so a GET never does it."""
    ok, broken, why = audit.verify(full=False)  # what was added since the last verified checkpoint
    return render(request, "wizard/_audit_badge.html", {"ok": ok, "broken": broken, "why": why})
