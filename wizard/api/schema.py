"""The OpenAPI document's finishing touch: every operation lists the errors every operation can answer."""

from __future__ import annotations

from typing import Any

ERRORS = {
    "400": "a field-keyed list of problems, or {detail} with a service's sentence",
    "401": "no token, or an unknown, revoked or expired one",
    "403": "the role (or a read-only token) does not allow this: {detail} says which role",
    "404": "no such object",
    "429": "this token's rate (CARPWEB_API_RATE) is used up: retry after Retry-After seconds",
}
OPEN = {"/api/v1/health/"}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {"type": "object", "additionalProperties": True,
                        "description": "{detail: sentence} or {field: [sentences]}"}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, why in ERRORS.items():
                if path in OPEN and code in ("401", "403", "404"):
                    continue
                error = {"schema": {"$ref": "#/components/schemas/Error"}}
                operation["responses"].setdefault(code, {"description": why, "content": {"application/json": error}})
    return result
