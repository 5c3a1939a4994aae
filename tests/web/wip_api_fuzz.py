# NOT COLLECTED (work in progress, issue 20): Schemathesis still reports "missing Authorization accepted" on
# GET /api/v1/clusters/, which is not yet understood; rename to test_api_fuzz.py once green.
"""Schemathesis against the live OpenAPI document, in process (WSGI): every operation with generated inputs, as a
viewer's token and as an admin's. No 5xx, every answer matches the schema, and no secret appears in any answer."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import connections
from hypothesis import HealthCheck, settings

from tests.web.test_api import KEY, person, ready_cluster, token_for
from wizard import crypto

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
connections.close_all()  # loading the document at collection opened the database; the test database comes later
CASES: list[str] = []  # one entry per generated case, for the count README gives


@pytest.fixture
def seeded(db):
    cluster = ready_cluster()
    admin, viewer = token_for(person("fuzz-admin", "admin")), token_for(person("fuzz-viewer", "viewer"))
    secrets = [crypto.decrypt(cluster.service_ips.get().password_enc), KEY.splitlines()[1], admin.split("_")[2],
               viewer.split("_")[2]]
    return {"admin": admin, "viewer": viewer, "secrets": secrets}


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case, seeded):
    for who in ("viewer", "admin"):
        if case.method == "GET" and "wait" in (case.query or {}):
            case.query = {**case.query, "wait": 0}  # a long-poll would only make the run slower
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {seeded[who]}"}
        response = case.call()
        CASES.append(f"{case.method} {case.path}")
        case.validate_response(response)
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
    assert set(CASES) == operations, operations - set(CASES)
