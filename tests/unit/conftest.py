"""Unit fixtures: nothing reaches the broker, and fake hosts settle at once."""

import pytest

from carpweb.celery import app
from wizard.carp import cluster as carp_cluster


@pytest.fixture(autouse=True)
def published(monkeypatch) -> list[tuple[str, list]]:
    """Unit tests execute runs and deliveries in this process. What the product would publish is kept here
    instead, so a real worker left running by another suite (the session's) can never claim them first."""
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, list(args or []))))
    return sent


@pytest.fixture
def quick_carp(monkeypatch):
    """CARP's transition deadline (11 s at advbase 1) cut to half a second: fake hosts elect instantly."""
    monkeypatch.setattr(carp_cluster, "transition_deadline", lambda advbase: 0.5)
