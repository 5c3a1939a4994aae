"""The audit chain is keyed (HMAC-SHA256, key outside the database): an edit re-sealed with plain SHA-256 by
someone who can write the database is still found; old chains are verified once and re-sealed by a migration;
the head is written to the log."""

from __future__ import annotations

import hashlib
import logging

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.web.test_team import _tamper
from wizard import audit
from wizard.models import AuditCheckpoint, AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)


def _reseal_with_sha256(from_id: int) -> None:
    """What an attacker with database access (and no key) can do: edit an entry and recompute the whole chain
    after it the way the old code did, with plain SHA-256."""
    prev = AuditEntry.objects.filter(pk__lt=from_id).order_by("-id").values_list("hash", flat=True).first() or ""
    for entry in AuditEntry.objects.filter(pk__gte=from_id).order_by("id"):
        entry.prev_hash = prev
        prev = hashlib.sha256(audit.content(entry).encode()).hexdigest()
        _tamper("UPDATE wizard_auditentry SET prev_hash = %s, hash = %s WHERE id = %s", [entry.prev_hash, prev,
                                                                                       entry.pk])


def test_an_edit_with_the_sha256_chain_recomputed_is_found():
    ids = [audit.record("test.event", after={"n": i}).pk for i in range(4)]
    assert audit.verify()[0]
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 99}', ids[1]])
    _reseal_with_sha256(ids[1])
    ok, broken, why = audit.verify()
    assert not ok and broken == ids[1] and "MAC" in why


def test_a_rotated_key_still_verifies_older_entries(settings):
    old = audit.record("test.event", after={"n": 1}).pk
    settings.CARPWEB_AUDIT_KEYS = ["a-new-key-" + "0" * 40, *settings.CARPWEB_AUDIT_KEYS]
    new = audit.record("test.event", after={"n": 2}).pk
    assert audit.verify() == (True, None, "2 entries, chain intact")
    settings.CARPWEB_AUDIT_KEYS = settings.CARPWEB_AUDIT_KEYS[:1]  # the old key dropped: its entries fail
    assert audit.verify()[:2] == (False, old)
    assert new > old


def test_the_migration_verifies_the_old_chain_and_reseals_it_noting_the_result(capsys):
    executor = MigrationExecutor(connection)
    executor.migrate([("wizard", "0012_accounts")])
    old_entry = executor.loader.project_state(("wizard", "0012_accounts")).apps.get_model("wizard", "AuditEntry")
    # Entries as the old code wrote them: a plain SHA-256 chain, one of them edited afterwards.
    prev = ""
    for i in range(3):
        entry = old_entry(ts=audit.timezone.now(), actor_name="old", action="old.event", after={"n": i},
                           prev_hash=prev)
        entry.hash = prev = hashlib.sha256(audit.content(entry).encode()).hexdigest()
        entry.save()
    ids = list(AuditEntry.objects.order_by("id").values_list("id", flat=True))
    AuditCheckpoint.objects.create(entry_id=ids[-1], hash=prev, count=3)
    _tamper("UPDATE wizard_auditentry SET after = %s WHERE id = %s", ['{"n": 42}', ids[1]])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    note = AuditEntry.objects.order_by("-id").first()
    assert note is not None and note.action == "audit.reseal"
    assert note.after == {"sha256_chain": "broken", "first_broken_entry": ids[1], "entries": 3}
    assert audit.verify() == (True, None, "4 entries, chain intact")
    assert not AuditCheckpoint.objects.filter(entry_id=ids[-1], hash=prev).exists()
    assert "re-sealed with HMAC-SHA256" in capsys.readouterr().out


def test_each_checkpoint_writes_the_head_to_the_log(caplog):
    last = audit.record("test.event").pk
    with caplog.at_level(logging.INFO, logger="wizard.audit"):
        audit.verify()
        audit.log_head("test")
    entry = AuditEntry.objects.get(pk=last)
    assert f"audit checkpoint: entry {last} mac {entry.hash}" in caplog.text
    assert f"audit head (test): entry {last} mac {entry.hash}" in caplog.text
