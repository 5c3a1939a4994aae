"""Benchmark: from a step row's `finished` time to the moment the browser shows its final status.

    sudo .venv/bin/python bench/stream_latency.py [--runs 4] [--database-url URL --broker-url URL]

Its own lab (carplat, 127.0.0.1 ports 27xxx), a scratch carpweb (embedded by default), a Celery worker, the
web as deployed (gunicorn + 2 uvicorn workers), and Chromium with a MutationObserver on the run page that
timestamps every status element that arrives. Runs alternate setup (with configure) and a failover drill;
the page is open before each run starts. Prints p50/p95/max in milliseconds (JSON with --json).
"""

from __future__ import annotations

import argparse
import os

from harness import carpweb, lab, percentile, report

OBSERVER = """
window.__seen = [];
const note = (el) => {
  const m = (el.id || '').match(/^s(\\d+)-status$/);
  if (m) window.__seen.push([Number(m[1]), el.dataset.stepStatus, Date.now()]);
};
new MutationObserver((mutations) => {
  for (const mutation of mutations) for (const node of mutation.addedNodes) {
    if (node.nodeType !== 1) continue;
    note(node);
    node.querySelectorAll('[id$="-status"]').forEach(note);
  }
}).observe(document, {childList: true, subtree: true});
"""


def _latencies(run_id: int, seen: list[list[object]]) -> list[float]:
    from wizard.models import Step

    first: dict[tuple[int, str], float] = {}
    for pk, status, t in seen:
        first.setdefault((int(str(pk)), str(status)), float(str(t)))
    out = []
    for step in Step.objects.filter(run_id=run_id).exclude(finished=None):
        shown = first.get((step.pk, step.status))
        if shown is not None:
            out.append(shown - step.finished.timestamp() * 1000)  # type: ignore[union-attr]
    return out


def _report_mismatch(page: object, run_id: int) -> None:
    """What the page shows against the database, when they disagree (a lost update would show here)."""
    from wizard.models import Step

    for step in Step.objects.filter(run_id=run_id).order_by("pk"):
        shown = page.evaluate(f"(document.getElementById('s{step.pk}-status') || {{dataset: {{}}}}).dataset")  # type: ignore[attr-defined]
        if shown.get("stepStatus") != step.status:
            print(f"MISMATCH row {step.pk} {step.where} {step.name}: db {step.status} rev {step.rev}, page {shown}")
    print("live root:", page.evaluate("JSON.stringify(document.querySelector('[data-live]').dataset)"))  # type: ignore[attr-defined]


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--broker-url", default="")
    ap.add_argument("--json")
    args = ap.parse_args()
    with lab("carplat", 27000) as world, carpweb(args.database_url, args.broker_url) as site:
        from django.contrib.auth.models import User
        from playwright.sync_api import sync_playwright

        from carpweb.celery import app
        from tests.helpers import lab_cluster
        from wizard.models import Run

        cluster = lab_cluster(world, configure_service_ip=True, probe=True)  # type: ignore[arg-type]
        User.objects.create_superuser("bench", password="bench-password-1")
        site.worker("-P", "prefork", "-c", "4")  # the pool these figures were measured with
        _, url = site.web(workers=2)
        samples: dict[str, list[float]] = {"setup": [], "drill": []}
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API keeps a loop in this thread
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            # Playwright polls wait_for_function with an evaluated string, which carpweb's CSP refuses: the bench's
            # own page context bypasses it (the product's pages do not need eval; tests check that).
            page = browser.new_context(bypass_csp=True).new_page()
            page.add_init_script(OBSERVER)
            page.goto(url + "/login/")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", "bench-password-1")
            page.click("button[type=submit]")
            for i in range(args.runs):
                kind = "setup" if i % 2 == 0 else "drill"
                run = Run.objects.create(cluster=cluster, kind=kind, created_by_name="bench")
                page.goto(f"{url}/runs/{run.pk}/")
                page.wait_for_function("document.querySelector('[data-live]').dataset.flowing === '1'")
                app.send_task("wizard.run_execute", args=[run.pk])
                page.wait_for_selector("[data-run-status=ok], [data-run-status=failed]", timeout=120000)
                try:
                    page.wait_for_function("!document.querySelector('[data-step-status=pending], "
                                           "[data-step-status=running]')", timeout=15000)
                except Exception:
                    _report_mismatch(page, run.pk)
                    raise
                samples[kind] += _latencies(run.pk, page.evaluate("window.__seen"))
            browser.close()
    every = samples["setup"] + samples["drill"]
    result: dict[str, object] = {
        "database": "postgresql" if args.database_url else "sqlite", "runs": args.runs, "rows": len(every),
        "p50_ms": round(percentile(every, 0.5), 1), "p95_ms": round(percentile(every, 0.95), 1),
        "max_ms": round(max(every), 1),
        **{f"{k}_p95_ms": round(percentile(v, 0.95), 1) for k, v in samples.items() if v}}
    return report(result, args.json)


if __name__ == "__main__":
    main()
