"""Headless Chromium walks the wizard from an empty database to a green run against the lab."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from wizard.models import Run
from wizard.plan import plan_for

pytestmark = [pytest.mark.lab, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def page(browser_page):
    return browser_page


def test_wizard_from_empty_database_to_green_run(page, web_server, fresh_lab, celery_worker_process):
    lab = fresh_lab
    User.objects.create_superuser("admin", password="pw-for-tests")
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(web_server.url + "/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "pw-for-tests")
    page.click("button[type=submit]")
    page.click("text=Set up the first one")
    page.fill("#id_name", "web")
    page.fill("#id_subnet", "192.0.2.0/24")
    page.fill("#id_gateway", "192.0.2.1")
    page.fill("#id_vip", "192.0.2.100")
    page.click("text=Save and continue: servers")
    key = Path(lab.key_path).read_text()
    for i, host in enumerate(("server-1", "server-2")):
        info = lab.host(host)
        page.fill(f"#id_servers-{i}-name", host)
        page.fill(f"#id_servers-{i}-address", info.address)
        page.fill(f"#id_servers-{i}-ssh_host", "127.0.0.1")
        page.fill(f"#id_servers-{i}-ssh_port", str(info.ssh_port))
        page.fill(f"#id_servers-{i}-private_key", key)
    page.screenshot(path=str(ARTIFACTS / "wizard-servers.png"), full_page=True)
    page.click("text=Save and continue: interface")
    page.click("text=Discover")
    page.wait_for_selector("text=Confirm the SSH host keys")
    for host in ("server-1", "server-2"):
        assert lab.host(host).host_key_fingerprint.split()[1] in page.content()
    page.click("text=I have checked these fingerprints: pin them")
    page.wait_for_selector("text=Pinned the host keys")
    page.click("text=Discover")
    page.wait_for_selector("text=Preselected")
    assert page.input_value("#id_interface") == "em0"
    page.click("text=Save and continue: review")
    page.wait_for_selector("text=Command plan")
    page.screenshot(path=str(ARTIFACTS / "wizard-review.png"), full_page=True)
    page.click("text=Run preflight, prepare, verify and configure the service IP")
    page.wait_for_selector("[data-run-status=ok]", timeout=60000)
    assert page.locator("[data-step-status=failed]").count() == 0
    # 2 servers x (connect + preflight/prepare/verify + configure) + the cluster-wide check
    plan = plan_for(Run.Kind.SETUP, configure_service_ip=True)
    assert page.locator("tr.step").count() == 2 * (1 + len(plan.node_steps)) + len(plan.cluster_rows) == 2 * 19 + 1
    assert "server-1 MASTER, server-2 BACKUP" in page.content()
    page.screenshot(path=str(ARTIFACTS / "run-finished.png"), full_page=True)
    assert page.csp_violations == []  # htmx did all of the above under the Content Security Policy
