"""The heartbeat check that marks runs of dead workers as interrupted, every 15 seconds (where beat runs)."""

from django.db import migrations


def forwards(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=15, period="seconds")
    PeriodicTask.objects.get_or_create(name="carpweb interrupted runs", defaults={
        "task": "wizard.runs_reap", "interval": every, "enabled": True,
        "description": "Mark runs whose worker stopped sending heartbeats as interrupted."})


class Migration(migrations.Migration):
    dependencies = [("wizard", "0004_roles_trigger_schedule")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
