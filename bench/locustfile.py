"""Locust users watching run progress pages, as admins do while runs proceed (127.0.0.1 only)."""

import os
import random
import re

from locust import HttpUser, between, task

RUN_IDS = [int(x) for x in os.environ["CARPWEB_LOAD_RUNS"].split(",")]
STEP = re.compile(r'data-step="([^"]+)"')


class ProgressWatcher(HttpUser):
    wait_time = between(0.3, 0.7)

    def on_start(self) -> None:
        page = self.client.get("/login/", name="login page")
        token = self.client.cookies.get("csrftoken", "")
        self.client.post("/login/", {"username": os.environ["CARPWEB_LOAD_USER"],
                                     "password": os.environ["CARPWEB_LOAD_PASSWORD"],
                                     "csrfmiddlewaretoken": token}, headers={"Referer": page.url}, name="login")

    @task
    def progress(self) -> None:
        run_id = random.choice(RUN_IDS)  # noqa: S311 - load spread, not security
        with self.client.get(f"/runs/{run_id}/progress/", name="/runs/[id]/progress/", catch_response=True,
                             headers={"HX-Request": "true"}) as res:
            if res.status_code >= 500:
                res.failure(f"server error {res.status_code}")
            elif res.status_code not in (200, 286):
                res.failure(f"unexpected {res.status_code}")
            else:
                html = res.text
                rows = re.findall(r'<article class="server-run">.*?</article>', html, re.S)
                for block in rows:
                    names = STEP.findall(block)
                    if len(names) != len(set(names)):
                        res.failure("a step row appears twice")
                        return
                res.success()
