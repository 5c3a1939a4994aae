"""App config for the wizard."""

from django.apps import AppConfig


class WizardConfig(AppConfig):
    name = "wizard"
    verbose_name = "carpweb wizard"
