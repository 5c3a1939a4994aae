"""A run's step rows: planned all at once, then written as each one changes, with secrets masked."""

from __future__ import annotations

import threading
import time
from collections import deque

from django.db import connection
from django.utils import timezone

from .. import revisions
from ..carp.facts import CommandResult, mask_secret_words
from ..models import Run, Server, Step

MASK = "********"
LIVE_LINES = 20  # lines of output a running step shows
LIVE_EVERY = 0.1  # seconds between two writes of a running step's output
MASKED_FIELDS = ("message", "command", "stdout_tail", "stderr_tail")
SLOW = 0.3  # seconds a step runs before its row is written as running (most are over before)
TAIL = 4000  # characters of a command's stdout and stderr a row keeps (the end: where the error usually is)


def mask(text: str, secrets: list[str]) -> str:
    """The run's own secrets, and any `pass VALUE` or `key "VALUE"` (another vhid's, a hand-made line's)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return mask_secret_words(text, MASK)


class Recorder:
    def __init__(self, run: Run, secrets: list[str]) -> None:
        self.run, self.secrets = run, secrets
        self.rows: dict[tuple[int | None, str], Step] = {}
        self._live: dict[int, tuple[deque[str], float]] = {}
        self._live_lock = threading.Lock()
        self._lock = threading.Lock()
        self._unwritten: dict[int, threading.Timer] = {}  # rows running, not yet written so (start)
        self._writing: dict[int, threading.Event] = {}

    def plan(self, servers: list[Server], node_steps: list[tuple[str, str, str]],
             cluster_rows: list[tuple[str, str]]) -> None:
        """Every row exists (pending) before anything runs, so the page shows the whole plan at once.
        `node_steps` are (phase, name, title) for CARP nodes; every server also gets its connect row."""
        rows = []
        for server in servers:
            steps = [("connect", "connect", "SSH with the pinned host key")]
            if server.role == Server.Role.NODE:
                steps += node_steps
            rows += [Step(run=self.run, server=server, server_name=server.name, position=i, phase=phase, name=name,
                          title=title) for i, (phase, name, title) in enumerate(steps)]
        rows += [Step(run=self.run, server=None, cluster_wide=True, position=i, phase="cluster", name=name,
                      title=title) for i, (name, title) in enumerate(cluster_rows)]
        with revisions.change() as rev:
            for row in rows:
                row.rev = rev
            created = Step.objects.bulk_create(rows)
            Run.objects.filter(pk=self.run.pk).update(planned_rev=rev)
            revisions.touch_run(self.run, rev)
        if any(r.pk is None for r in created):  # a database that cannot return the new ids reads them back
            created = list(self.run.steps.all())
        self.rows = {(r.server_id, r.name): r for r in created}

    def row(self, server: Server | None, name: str) -> Step:
        return self.rows[(server.pk if server else None, name)]

    def save(self, row: Step, **fields: object) -> None:
        for key, value in fields.items():
            setattr(row, key, mask(value, self.secrets) if isinstance(value, str) and key in MASKED_FIELDS else value)
        with revisions.change() as rev:
            row.rev = rev
            Step.objects.filter(pk=row.pk).update(rev=rev, **{key: getattr(row, key) for key in fields})

    def live(self, row: Step, line: str) -> None:
        """One more line of a running step's output; written at most every LIVE_EVERY seconds."""
        if row.status != Step.Status.RUNNING:
            return
        with self._live_lock:
            lines, last = self._live.get(row.pk, (deque(maxlen=LIVE_LINES), 0.0))
            lines.append(mask(line, self.secrets)[:500])
            now = time.monotonic()
            due = now - last >= LIVE_EVERY
            self._live[row.pk] = (lines, now if due else last)
            text = "\n".join(lines)
        if due:
            self._write_running(row)  # a row with output shows as running first
            self.save(row, live=text)

    def start(self, row: Step) -> None:
        """The row is running. Most steps are over within SLOW seconds (a warm connection, a read), so the row is
        written as running only if it is still going then: a quick step goes from pending to its result in one
        write instead of two. In this process's memory it is running at once."""
        row.status, row.started = Step.Status.RUNNING, timezone.now()
        timer = threading.Timer(SLOW, self._write_running, (row, True))
        timer.daemon = True
        with self._lock:
            self._unwritten[row.pk] = timer
        timer.start()

    def _write_running(self, row: Step, in_timer: bool = False) -> None:
        try:
            with self._lock:
                timer = self._unwritten.pop(row.pk, None)
                if timer is None:
                    return
                writing = self._writing[row.pk] = threading.Event()
            timer.cancel()
            try:
                self.save(row, status=Step.Status.RUNNING, started=row.started)
            finally:
                writing.set()
                with self._lock:
                    self._writing.pop(row.pk, None)
        finally:
            if in_timer:
                connection.close()  # the timer's thread ends here

    def _settle(self, row: Step) -> None:
        """Before a row's result is written: its running write is cancelled, or waited for if under way."""
        with self._lock:
            timer = self._unwritten.pop(row.pk, None)
            writing = self._writing.get(row.pk)
        if timer is not None:
            timer.cancel()
        if writing is not None:
            writing.wait()

    def finish(self, row: Step, status: str, message: str, transcript: list[str] | None = None,
               last: CommandResult | None = None) -> None:
        self._settle(row)
        fields: dict[str, object] = {"status": status, "message": message, "finished": timezone.now(), "live": "",
                                     "started": row.started}
        if transcript:
            fields["command"] = "\n".join(transcript)
        if last is not None:
            fields.update(exit_code=last.code, stdout_tail=mask(last.stdout, self.secrets)[-TAIL:],
                          stderr_tail=mask(last.stderr, self.secrets)[-TAIL:])
        self.save(row, **fields)

    def skip(self, row: Step, why: str) -> None:
        self._settle(row)
        self.save(row, status=Step.Status.SKIPPED, message=why)

    def skip_pending(self, server: Server | None, why: str) -> None:
        for (server_id, _), row in self.rows.items():
            if server_id == (server.pk if server else None) and row.status == Step.Status.PENDING:
                self.skip(row, why)

    def unfinished(self) -> list[Step]:
        return [r for r in self.rows.values() if r.status in Step.UNFINISHED]
