"""carpweb: the Django project (settings, URLs) and its Celery app."""

from .celery import app as celery_app

__all__ = ["celery_app"]
