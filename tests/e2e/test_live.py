"""Progress is pushed to the page (SSE): an opened transcript stays open, and a web process killed mid-run
comes back to a page that resumes where it was, with no row lost and none repeated. Real lab, real worker,
the web process as deployed (gunicorn + uvicorn), Chromium."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.models import User

from tests.conftest import WebServer
from tests.helpers import lab_cluster, wait_run, wait_until
from wizard import services
from wizard.models import Run, Step

pytestmark = [pytest.mark.lab, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# Every status element that reaches the page (initial render, plan, step events), with its row's revision.
OBSERVER = """
window.__changes = [];
// An element is noted once: while the parser builds the page, one element can appear in several mutation
// records (its container's, then its own); a swap that brings a change creates a new element.
const noted = new WeakSet();
const note = (el) => {
  const m = (el.id || '').match(/^s(\\d+)-status$/);
  if (!m || noted.has(el)) return;
  noted.add(el);
  window.__changes.push({pk: Number(m[1]), rev: Number(el.dataset.rev), status: el.dataset.stepStatus,
                         t: Date.now()});
};
new MutationObserver((mutations) => {
  for (const mutation of mutations) for (const node of mutation.addedNodes) {
    if (node.nodeType !== 1) continue;
    note(node);
    node.querySelectorAll('[id$="-status"]').forEach(note);
  }
}).observe(document, {childList: true, subtree: true});
"""


def _log_in(page, url: str) -> None:
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", password="pw-for-tests")
    page.goto(url + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Clusters")


def test_an_opened_transcript_stays_open_while_steps_change(world, web_server, browser_page):
    page = browser_page
    _log_in(page, web_server.url)
    cluster = lab_cluster(world, configure_service_ip=True)
    run = services.run_start(cluster=cluster, kind="setup")
    page.goto(f"{web_server.url}/runs/{run.pk}/")
    transcript = page.locator("details.transcript:visible").first
    transcript.wait_for(timeout=30000)
    row_id = transcript.evaluate("d => d.closest('tr').id")
    page.click(f"#{row_id} details.transcript summary")
    opened = time.time()
    page.wait_for_selector("[data-run-status=ok]", timeout=90000)
    changed_since = Step.objects.filter(run=run, finished__gt=Step.objects.get(pk=row_id[1:]).finished).count()
    assert changed_since >= 5, "steps changed while the transcript was open"
    assert page.locator(f"#{row_id} details.transcript").get_attribute("open") is not None
    assert page.locator("details.transcript[open]").count() == 1
    assert time.time() - opened > 1  # it stayed open over time, not just at the click
    # Every transcript open at laptop width: long command lines wrap, the page never scrolls sideways.
    page.evaluate("document.querySelectorAll('details.transcript').forEach(d => { d.open = true })")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.csp_violations == []


def test_a_web_process_killed_mid_run_resumes_with_nothing_lost_or_repeated(world, web_server, browser_page):
    page = browser_page
    page.add_init_script(OBSERVER)
    _log_in(page, web_server.url)
    cluster = lab_cluster(world, configure_service_ip=True)
    world.fault("server-1", "netem", "150", "0")  # a slower run, so it goes on while the web is down
    run = services.run_start(cluster=cluster, kind="setup")
    page.goto(f"{web_server.url}/runs/{run.pk}/")
    wait_until(lambda: page.locator("[data-step-status=ok], [data-step-status=changed]").count() >= 6, limit=60)
    web_server.kill()
    down_at = Step.objects.filter(run=run).exclude(status__in=Step.UNFINISHED).count()
    wait_until(lambda: Step.objects.filter(run=run).exclude(status__in=Step.UNFINISHED).count() >= down_at + 3,
               limit=60)  # the page misses these while no web process answers
    web_server.start()
    restarted = time.time() * 1000
    page.wait_for_selector("[data-run-status=ok]", timeout=120000)
    run.refresh_from_db()
    assert run.status == Run.Status.OK
    for step in Step.objects.filter(run=run):
        shown = page.locator(f"#s{step.pk}-status")
        assert shown.count() == 1, f"row {step.pk} ({step.where} {step.name}) shown {shown.count()} times"
        assert (shown.get_attribute("data-step-status"), shown.get_attribute("data-rev")) == (step.status,
                                                                                              str(step.rev))
    assert page.locator("tr.step").count() == Step.objects.filter(run=run).count()
    changes = page.evaluate("window.__changes")
    seen = [(c["pk"], c["rev"]) for c in changes]
    twice = sorted({pair for pair in seen if seen.count(pair) > 1})
    assert not twice, f"these (row, revision) changes reached the page twice: {twice}"
    assert any(c["t"] > restarted for c in changes), "nothing arrived after the restart"


def test_a_page_whose_stream_cannot_connect_polls_the_same_changes(world, web_server, browser_page):
    page = browser_page
    # As a proxy that strips event streams would: the stream requests fail, plain requests pass.
    page.route(re.compile(r"/runs/\d+/events/\?after="), lambda route: route.abort())
    _log_in(page, web_server.url)
    cluster = lab_cluster(world)
    run = services.run_start(cluster=cluster, kind="setup")
    page.goto(f"{web_server.url}/runs/{run.pk}/")
    page.wait_for_selector("[data-run-status=ok]", timeout=90000)
    assert page.evaluate("document.querySelector('[data-live]').dataset.polling") == "1"
    for step in Step.objects.filter(run=run):
        assert page.get_attribute(f"#s{step.pk}-status", "data-step-status") == step.status


def test_a_stream_that_opens_after_polling_began_adds_nothing_twice(world, collected_static, tmp_path, request,
                                                                    browser_page):
    """A slow stream (a busy web process, a slow proxy) opens after the page gave up waiting and polls: the page
    keeps polling and shuts the late stream, so no change reaches it twice."""
    page = browser_page
    page.add_init_script(OBSERVER)
    late = re.compile(r"/runs/\d+/events/\?after=")

    def slow_stream(route):  # noqa: ANN001 - Playwright's Route
        time.sleep(2.5)  # the page starts polling at 1 s (CARPWEB_LIVE_FALLBACK_MS below)
        route.continue_()

    web_server = WebServer(tmp_path / "web.log", env={"CARPWEB_LIVE_FALLBACK_MS": "1000"}).start()
    request.addfinalizer(web_server.stop)
    page.route(late, slow_stream)
    _log_in(page, web_server.url)
    cluster = lab_cluster(world)
    world.fault("server-1", "netem", "150", "0")  # a run that goes on well after the stream opened
    run = services.run_start(cluster=cluster, kind="setup")
    page.goto(f"{web_server.url}/runs/{run.pk}/")
    assert page.get_attribute("body", "data-live-fallback-ms") == "1000"
    page.wait_for_selector("[data-run-status=ok]", timeout=90000)
    live = page.evaluate("Object.assign({}, document.querySelector('[data-live]').dataset)")
    assert live.get("polling") == "1", f"the page never fell back to polling: {live}"
    seen = [(c["pk"], c["rev"]) for c in page.evaluate("window.__changes")]
    twice = sorted({pair for pair in seen if seen.count(pair) > 1})
    assert not twice, f"these (row, revision) changes reached the page twice: {twice}"
    for step in Step.objects.filter(run=run):
        assert page.get_attribute(f"#s{step.pk}-status", "data-step-status") == step.status


def test_a_second_viewer_sees_the_cluster_and_the_inventory_change_without_a_reload(world, web_server, browser_page):
    cluster_page = browser_page
    _log_in(cluster_page, web_server.url)
    cluster = lab_cluster(world, configure_service_ip=True)
    assert wait_run(services.run_start(cluster=cluster, kind="configure"), limit=90).status == Run.Status.OK
    inventory = cluster_page.context.browser.new_page()  # another person: a browser context of its own
    _log_in(inventory, web_server.url)
    cluster_page.goto(f"{web_server.url}/clusters/{cluster.pk}/")
    inventory.goto(web_server.url + "/")
    for page in (cluster_page, inventory):
        page.evaluate("window.__loaded_once = true")  # gone if the page were reloaded
        page.wait_for_selector("[data-live][data-flowing='1']", state="attached")
    server_1, server_2 = cluster.servers.get(name="server-1"), cluster.servers.get(name="server-2")
    assert "MASTER" in cluster_page.inner_text(f"#node-{server_1.pk}-carp")
    run = services.run_start(cluster=cluster, kind="maintenance-on", target="server-1")
    # (Selectors, not wait_for_function: Playwright evaluates those with eval, which carpweb's CSP refuses.)
    cluster_page.wait_for_selector(f"#node-{server_2.pk}-carp:has-text('MASTER')", timeout=60000)
    assert "BACKUP" in cluster_page.inner_text(f"#node-{server_1.pk}-carp")
    assert "in maintenance" in cluster_page.inner_text(f"#node-{server_1.pk}-maint")
    cluster_page.wait_for_selector(f"#cluster-runs a[href='/runs/{run.pk}/']")
    inventory.wait_for_selector(f"#inv-{cluster.pk} td.nowrap:text-is('server-2')", timeout=60000)
    for page in (cluster_page, inventory):
        assert page.evaluate("window.__loaded_once") is True
