"""App config for the wizard."""

from django.apps import AppConfig


class WizardConfig(AppConfig):
    name = "wizard"
    verbose_name = "carpweb wizard"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the audit receivers
