"""Web hardening: CSRF on every POST (htmx included), a clean `check --deploy`, and a CSP on every page."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.helpers import make_cluster

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def strict_client():
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests"))
    return client


def test_post_without_csrf_token_is_refused_also_for_htmx(strict_client):
    cluster = make_cluster(name="web", subnet="192.0.2.0/24", gateway="192.0.2.1", vip="192.0.2.100")
    for url in (reverse("wizard-new"), reverse("run-create", args=[cluster.pk]),
                reverse("wizard-discover", args=[cluster.pk])):
        assert strict_client.post(url, {}).status_code == 403
        assert strict_client.post(url, {}, HTTP_HX_REQUEST="true").status_code == 403


def test_htmx_post_with_the_header_token_passes(strict_client):
    page = strict_client.get(reverse("cluster-list"))
    token = page.cookies["csrftoken"].value
    assert 'hx-headers=\'{"x-csrftoken": "' in page.content.decode()  # every htmx request carries it
    res = strict_client.post(reverse("audit-verify"), {}, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
    assert res.status_code == 200  # the header token got it past CSRF


def test_every_page_has_a_content_security_policy(strict_client):
    res = strict_client.get(reverse("cluster-list"))
    csp = res.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_check_deploy_has_no_warnings_in_production_mode():
    env = dict(os.environ, CARPWEB_SECRET_KEY=Fernet.generate_key().decode() * 2,
               CARPWEB_ENCRYPTION_KEYS=Fernet.generate_key().decode(), CARPWEB_AUDIT_KEY="k" * 64,
               CARPWEB_ALLOWED_HOSTS="carpweb.example.org")
    res = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no issues" in res.stdout
