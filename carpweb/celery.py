"""The Celery app: configured from Django settings (CELERY_*), tasks discovered in installed apps."""

import os

from celery import Celery

from . import broker  # noqa: F401 - registers the "carpfs" transport (atomic filesystem broker)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carpweb.settings")
app = Celery("carpweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
