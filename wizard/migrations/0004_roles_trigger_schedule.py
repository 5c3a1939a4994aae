"""Roles as groups, the PostgreSQL guard that keeps the audit log append-only, and the drift schedule."""

from django.db import migrations

TRIGGER = """
CREATE OR REPLACE FUNCTION carpweb_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'wizard_auditentry is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS wizard_auditentry_append_only ON wizard_auditentry;
CREATE TRIGGER wizard_auditentry_append_only BEFORE UPDATE OR DELETE ON wizard_auditentry
    FOR EACH ROW EXECUTE FUNCTION carpweb_audit_append_only();
"""
UNTRIGGER = """
DROP TRIGGER IF EXISTS wizard_auditentry_append_only ON wizard_auditentry;
DROP FUNCTION IF EXISTS carpweb_audit_append_only();
"""


def forwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ("viewer", "operator", "admin"):
        Group.objects.get_or_create(name=name)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER, params=None)
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(name="carpweb drift check", defaults={
        "task": "wizard.drift_check_all", "interval": every, "enabled": True,
        "description": "Check or verify every cluster and record drift (runs only where celery beat runs)."})


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNTRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("wizard", "0003_audit_and_inventory"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
