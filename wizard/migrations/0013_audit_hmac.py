"""The audit chain moves from plain SHA-256 to HMAC-SHA256 under CARPWEB_AUDIT_KEY. The old chain is verified once,
every entry is re-sealed in order, and an `audit.reseal` entry records what the verification found (so a break made
before the upgrade stays on record, inside the new chain). Checkpoints of the old chain are dropped."""

import hashlib

from django.db import migrations
from django.utils import timezone


def _old_chain(entries, content):
    prev, count = "", 0
    for entry in entries.order_by("id").iterator(chunk_size=2000):
        if entry.prev_hash != prev or hashlib.sha256(content(entry).encode()).hexdigest() != entry.hash:
            return {"sha256_chain": "broken", "first_broken_entry": entry.pk, "entries": entries.count()}
        prev, count = entry.hash, count + 1
    return {"sha256_chain": "intact", "entries": count}


def reseal(apps, schema_editor):
    from wizard import audit

    Entry = apps.get_model("wizard", "AuditEntry")
    found = _old_chain(Entry.objects.all(), audit.content)
    pg = schema_editor.connection.vendor == "postgresql"
    if pg:
        schema_editor.execute("ALTER TABLE wizard_auditentry DISABLE TRIGGER wizard_auditentry_append_only")
    prev = ""
    for entry in Entry.objects.order_by("id").iterator(chunk_size=2000):
        entry.prev_hash = prev
        entry.hash = prev = audit.digest(entry)
        Entry.objects.filter(pk=entry.pk).update(prev_hash=entry.prev_hash, hash=entry.hash)
    if pg:
        schema_editor.execute("ALTER TABLE wizard_auditentry ENABLE TRIGGER wizard_auditentry_append_only")
    apps.get_model("wizard", "AuditCheckpoint").objects.all().delete()
    if found["entries"]:
        note = Entry(ts=timezone.now(), actor_name="system", action="audit.reseal", object_type="auditentry",
                     object_repr="the audit chain, re-sealed with HMAC-SHA256", after=found, prev_hash=prev)
        note.hash = audit.digest(note)
        note.save()
        print(f"\n  audit log: the SHA-256 chain was {found['sha256_chain']} over {found['entries']} entries; "
              "re-sealed with HMAC-SHA256 (noted as an audit.reseal entry)")


class Migration(migrations.Migration):
    dependencies = [("wizard", "0012_accounts")]
    operations = [migrations.RunPython(reseal, migrations.RunPython.noop)]
