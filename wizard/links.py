"""Links to carpweb's pages for what is written below the views (audit entries, notifications): the one place
outside the web layer that names its pages."""

from __future__ import annotations

from django.urls import reverse


def run_page(run_id: int) -> str:
    return reverse("run-detail", args=[run_id])


def cluster_page(cluster_id: int) -> str:
    return reverse("cluster-detail", args=[cluster_id])
