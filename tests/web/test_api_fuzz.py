"""Schemathesis against the live OpenAPI document, in process (WSGI): every operation with generated inputs, as a
viewer's token and as an admin's. No 5xx, every answer matches the schema, and no secret appears in any answer."""

from __future__ import annotations

import secrets

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.wsgi import get_wsgi_application
from django.db import connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.web.test_api import KEY, person, ready_cluster
from wizard import crypto
from wizard.models import ApiToken
from wizard.services import tokens

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# Text with NUL is refused by design (PostgreSQL's text cannot hold it; DRF says "Null characters are not allowed.").
schema.config.generation.update(allow_x00=False)
connections.close_all()  # loading the document at collection opened the database; the test database comes later
CASES: list[str] = []  # one entry per generated case, for the count README gives
# Each role's token is known before the database exists (Schemathesis asks for it while collecting); the fixture
# stores it as token_create would.
TOKENS = {who: (secrets.token_hex(6), secrets.token_hex(24)) for who in ("viewer", "admin")}
BEARER = {"now": "carpweb_{}_{}".format(*TOKENS["viewer"])}  # the token the next call sends


@schema.auth()
class TokenAuth:
    """Schemathesis's own auth hook, so its checks know which header is the credential (they send it wrong or
    without it on purpose and expect 401)."""

    def get(self, case, context):  # type: ignore[no-untyped-def]
        return BEARER["now"]

    def set(self, case, data, context):  # type: ignore[no-untyped-def]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def seeded(db):
    cluster = ready_cluster()
    for who, (key_id, secret) in TOKENS.items():
        ApiToken.objects.create(key_id=key_id, user=person(f"fuzz-{who}", who),
                                digest=tokens._digest(secret, django_settings.SECRET_KEY))
    admin, viewer = ("carpweb_{}_{}".format(*TOKENS[who]) for who in ("admin", "viewer"))
    secrets = [crypto.decrypt(cluster.service_ips.get().password_enc), KEY.splitlines()[1], admin.split("_")[2],
               viewer.split("_")[2]]
    return {"admin": admin, "viewer": viewer, "secrets": secrets}


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case, seeded):
    for who in ("viewer", "admin"):
        if case.method == "GET" and "wait" in (case.query or {}):
            case.query = {**case.query, "wait": 0}  # a long-poll would only make the run slower
        BEARER["now"] = seeded[who]
        response = case.call()
        CASES.append(f"{case.method} {case.path}")
        # Not "positive data acceptance": the schema says "a string" where the wizard's forms want a CIDR, an
        # address or ten characters of password; those refusals are the forms' sentences, by design.
        if case.path.endswith("/health/") and response.status_code == 503:
            # Health says 503 when no worker answers (none runs in this test unless an earlier one left its own):
            # the documented answer, not a server error.
            assert response.json()["healthy"] is False
            continue
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500
        for secret in seeded["secrets"]:
            if "/tokens/" in case.path and case.method == "POST":
                continue  # the one answer that carries a token: the new one, created for this call
            assert secret not in response.text


def test_cases_were_generated():
    """Runs after the fuzz test in file order: Schemathesis generated cases for every operation."""
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in schema.get_all_operations())  # type: ignore[union-attr]
                  }
    print(f"\nschemathesis: {len(CASES)} calls over {len(operations)} operations")
    assert operations <= set(CASES), operations - set(CASES)  # (it also tries methods the API does not have)
