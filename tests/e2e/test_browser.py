"""Headless Chromium walks the wizard from an empty database to a green run against the lab."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from wizard.carp.steps import Vip
from wizard.models import Run, ServiceIP
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
    page.click("text=Save and continue: service IPs")
    # The first service IP came from step 1; add an IPv6 one and a unicast IPv4 one.
    assert page.input_value("#id_sips-0-addresses") == "192.0.2.100/32"
    assert "Interfaces every node has (as Discover last saw them): em0." in page.inner_text("main")
    page.click("text=Keep and add a service IP")
    assert page.input_value("#id_sips-1-vhid") == "2"  # the first vhid free on em0
    page.fill("#id_sips-1-addresses", "2001:db8::100")  # no prefix: refused next to the field, the rest kept
    page.fill("#id_sips-1-password", "LabPassTwo2")
    page.click("text=Keep and add a service IP")  # htmx appends a card: what was typed stays, the password too
    page.wait_for_selector("#id_sips-2-addresses")
    assert page.input_value("#id_sips-1-password") == "LabPassTwo2"
    page.fill("#id_sips-2-addresses", "192.0.2.101")
    page.select_option("#id_sips-2-announce", "unicast")
    page.click("text=Save and continue: review")
    page.wait_for_load_state()
    page.screenshot(path=str(ARTIFACTS / "wizard-service-ips-error.png"), full_page=True)
    page.wait_for_selector("text=needs its prefix length")
    assert page.input_value("#id_sips-2-addresses") == "192.0.2.101"
    page.fill("#id_sips-1-addresses", "2001:db8::100/64")
    page.screenshot(path=str(ARTIFACTS / "wizard-service-ips.png"), full_page=True)
    page.click("text=Save and continue: review")
    page.wait_for_selector("text=Command plan")
    page.screenshot(path=str(ARTIFACTS / "wizard-review.png"), full_page=True)
    page.click("text=Run preflight, prepare, verify and configure the service IPs")
    page.wait_for_selector("[data-run-status=ok]", timeout=90000)
    assert page.locator("[data-step-status=failed]").count() == 0
    # 2 servers x (connect + 15 node-wide steps + 5 per service IP) + the cluster-wide check
    vips = [Vip("em0", n, ("x",), key=str(n)) for n in (1, 2, 3)]
    plan = plan_for(Run.Kind.SETUP, configure_service_ip=True, vips=vips)
    assert page.locator("tr.step").count() == 2 * (1 + len(plan.node_steps)) + len(plan.cluster_rows) == 2 * 31 + 1
    assert "server-1 MASTER, server-2 BACKUP" in page.content()
    sips = list(ServiceIP.objects.order_by("vhid").values_list("vhid", "addresses", "announce", "configured"))
    assert sips == [(1, ["192.0.2.100/32"], "multicast", True), (2, ["2001:db8::100/64"], "multicast", True),
                    (3, ["192.0.2.101/32"], "unicast", True)]
    page.screenshot(path=str(ARTIFACTS / "run-finished.png"), full_page=True)
    assert page.csp_violations == []  # htmx did all of the above under the Content Security Policy
