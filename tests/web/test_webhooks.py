"""Webhooks stay inside the trust boundary: public addresses only (checked on the address connected to), no
redirects, no framing headers, one deadline per attempt, and every failure a plain sentence. Real HTTP servers on
loopback; loopback is what must be refused unless CARPWEB_WEBHOOK_ALLOWED_NETWORKS lists it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from django.core import mail

from tests.helpers import make_cluster
from wizard import crypto, services
from wizard.models import Cluster, Delivery, Notice, NotificationTarget
from wizard.services import notifications

pytestmark = pytest.mark.django_db


class Server(ThreadingHTTPServer):
    def __init__(self, answer: tuple[int, dict[str, str]] = (204, {}), drip: bool = False) -> None:
        self.hits: list[dict[str, str]] = []
        self.answer, self.drip = answer, drip
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits.append(dict(self.headers))
        if self.server.drip:  # a status line that never ends, one byte a second
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(1)
            return
        code, headers = self.server.answer
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.shutdown()
        server.server_close()


def serve(servers: list[Server], **kw: object) -> Server:
    server = Server(**kw)  # type: ignore[arg-type]
    servers.append(server)
    return server


def deliver(address: str, header: tuple[str, str] | None = None, last_try: bool = True) -> Delivery:
    cluster = Cluster.objects.get_or_create(name="web", defaults={"subnet": "192.0.2.0/24", "gateway": "192.0.2.1"})[0]
    target = NotificationTarget.objects.create(kind="webhook", address=address, header_name=header[0] if header else "",
                                               header_value_enc=crypto.encrypt(header[1]) if header else "")
    notice = Notice.objects.create(cluster=cluster, kind=Notice.Kind.NO_MASTER, reason="x",
                                   time=notifications.timezone.now())
    delivery = Delivery.objects.create(notice=notice, target=target)
    try:
        services.delivery_attempt(delivery_id=delivery.pk, last_try=last_try)
    except services.DeliveryFailed:
        assert not last_try
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_unless_allowed_and_nothing_is_sent(servers, settings, host):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = ""
    server = serve(servers)
    delivery = deliver(f"http://{host}:{server.port}/hook")
    assert delivery.status == Delivery.Status.FAILED
    assert "loopback address" in delivery.last_error and "CARPWEB_WEBHOOK_ALLOWED_NETWORKS" in delivery.last_error
    assert server.hits == []


def test_an_allowed_network_is_reached_with_the_name_in_host_and_the_secret_header(servers, settings):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8, ::1/128"
    server = serve(servers)
    delivery = deliver(f"http://localhost:{server.port}/hook", header=("Authorization", "Bearer s3cr3t"))
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    assert server.hits[0]["Host"] == f"localhost:{server.port}"
    assert server.hits[0]["Authorization"] == "Bearer s3cr3t"


def test_a_redirect_is_not_followed_and_the_secret_goes_nowhere_else(servers, settings):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8"
    elsewhere = serve(servers)
    redirecting = serve(servers, answer=(307, {"Location": f"http://127.0.0.1:{elsewhere.port}/steal"}))
    delivery = deliver(f"http://127.0.0.1:{redirecting.port}/hook", header=("X-Token", "s3cr3t"))
    assert delivery.status == Delivery.Status.FAILED and "redirect" in delivery.last_error
    assert len(redirecting.hits) == 1 and elsewhere.hits == []


def test_one_deadline_per_attempt_even_for_an_answer_that_drips(servers, settings):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8"
    server = serve(servers, drip=True)
    started = time.monotonic()
    delivery = deliver(f"http://127.0.0.1:{server.port}/hook")
    took = time.monotonic() - started
    assert delivery.status == Delivery.Status.FAILED and "no answer within 5 s" in delivery.last_error
    assert took < notifications.WEBHOOK_DEADLINE + 1.0, took


def test_metadata_and_private_addresses_are_refused_at_delivery(settings):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = ""
    for address, kind in (("http://169.254.169.254/latest/meta-data/", "link-local"),
                          ("http://10.1.2.3:6379/", "private"), ("http://[fd00::1]/", "private"),
                          ("http://0.0.0.0:5432/", "unspecified")):
        delivery = deliver(address)
        assert delivery.status == Delivery.Status.FAILED and kind in delivery.last_error, (address, delivery.last_error)


def test_any_failure_ends_the_attempt_with_a_sentence_never_pending():
    delivery = deliver("http://[::1/broken", last_try=False)
    assert delivery.status == Delivery.Status.RETRYING and delivery.last_error
    delivery = deliver("http://[::1/broken", last_try=True)
    assert delivery.status == Delivery.Status.FAILED and delivery.last_error


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


@pytest.mark.parametrize("name", ["Host", "Content-Type", "Transfer-Encoding", "Connection", "Cookie",
                                  "Proxy-Authorization", "X Bad", "1abc"])
def test_framing_and_hop_by_hop_header_names_are_refused_next_to_the_field(admin_client, name):
    res = admin_client.post("/notifications/", {"address": "https://hooks.example.org/carp", "header_name": name,
                                                "header_value": "v"})
    assert res.status_code == 200 and not NotificationTarget.objects.exists()
    errors = res.context["form"].errors
    assert list(errors) == ["header_name"], errors


def test_an_internal_literal_address_is_refused_on_the_page(admin_client, settings):
    settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS = ""
    res = admin_client.post("/notifications/", {"address": "http://169.254.169.254/latest/"})
    assert "link-local" in str(res.context["form"].errors["address"])
    assert not NotificationTarget.objects.exists()


def test_a_multi_line_reason_still_makes_a_one_line_mail_subject(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    target = NotificationTarget.objects.create(kind="email", address="oncall@example.org")
    notice = Notice.objects.create(cluster=cluster, kind=Notice.Kind.DRIFT, reason="line one\nline two " + "x" * 300,
                                   time=notifications.timezone.now())
    delivery = Delivery.objects.create(notice=notice, target=target)
    services.delivery_attempt(delivery_id=delivery.pk, last_try=True)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    subject = mail.outbox[0].subject
    assert "\n" not in subject and len(subject) <= 150 and subject.startswith("[carpweb] web: Drift found: line one")
