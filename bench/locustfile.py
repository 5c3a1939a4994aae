"""Locust users following runs through the polling fallback (the same changes a stream sends), on 127.0.0.1 only."""

import os
import random
import re

from locust import HttpUser, between, task

RUN_IDS = [int(x) for x in os.environ["CARPWEB_LOAD_RUNS"].split(",")]
STATUS = re.compile(r'id="(s\d+-status)"')
RETRIED = "the connection closed before an answer; sent again"


class ProgressWatcher(HttpUser):
    wait_time = between(0.3, 0.7)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.after: dict[int, int] = {}

    def on_start(self) -> None:
        # Logged in already (bench/load.py made the session): watchers, not 50 simultaneous logins.
        self.client.cookies.set("sessionid", os.environ["CARPWEB_LOAD_SESSION"])

    @task
    def progress(self) -> None:
        """What a page whose stream cannot connect does: poll the run's changes since the last it saw."""
        run_id = random.choice(RUN_IDS)  # noqa: S311 - load spread, not security
        after = self.after.get(run_id, 0)
        url = f"/runs/{run_id}/events/?format=fragments&after={after}"
        for attempt in (1, 2):
            with self.client.get(url, name="/runs/[id]/events/?format=fragments", catch_response=True,
                                 headers={"HX-Request": "true"}) as res:
                if res.status_code == 0 and attempt == 1:
                    # The connection broke before any answer (say a kept-alive connection the server had just
                    # closed): a browser sends an idempotent GET again on a new connection, and so does this. It
                    # is counted apart (bench/load.py reports it), not hidden.
                    res.failure(RETRIED)
                    continue
                self._judge(res, run_id, after)
                return

    def _judge(self, res, run_id: int, after: int) -> None:  # type: ignore[no-untyped-def]
        if res.status_code >= 500:
            res.failure(f"server error {res.status_code}")
        elif res.status_code != 200:
            res.failure(f"unexpected {res.status_code}")
        else:
            ids = STATUS.findall(res.text)
            if len(ids) != len(set(ids)):
                res.failure("a step row appears twice in one answer")
                return
            self.after[run_id] = int(res.headers.get("X-Carpweb-After", after))
            res.success()
