"""Property-based fuzzing of the OpenAPI schema (schemathesis, in-process ASGI): for valid and
invalid inputs generated from the schema, no response is a 5xx, and every response matches
the status codes, content types and bodies the schema documents."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_support import library, make_app, shut_down, tiny_model  # noqa: E402, F401

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 40  # per operation and mode: ~700 requests in all, a few seconds on the tiny model


@pytest.fixture()  # one app per test: schemathesis's pytest plugin ends the app's lifespan after each test
def api_schema(library, tiny_model):  # noqa: F811
    # The admin token is not given to the fuzzer: admin routes are fuzzed up to their 401.
    app = make_app(library, tiny_model, max_upload_bytes=256 * 1024, admin_token="not-for-the-fuzzer")
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shut_down(app)


# schemathesis.pytest.from_fixture does not run under pytest 9 (it sets a private node
# attribute), so each operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case):
            response = case.call_and_validate(checks=CHECKS)
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            fuzz()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters or body (health, reload).
            assert mode is GenerationMode.NEGATIVE and not operation.query and not operation.path_parameters
    assert all(max(codes) < 500 for codes in seen.values()), seen
    if mode is GenerationMode.POSITIVE:  # valid requests do reach the service, not only the validator
        assert 200 in seen["GET /api/search"] and 200 in seen["POST /api/search"]
    else:
        assert 422 in seen["GET /api/search"] and {400, 422} & seen["POST /api/search"]


def test_item_operations_on_real_items(api_schema):
    """Valid requests against indexed items of every kind: ranges, pages, filters, renders."""
    from fastapi.testclient import TestClient

    results = TestClient(api_schema.app).get("/api/search", params={"q": "x", "k": 100}).json()["results"]
    ids = list({r["kind"]: r["id"] for r in results}.values())  # one item per kind
    assert len(ids) >= 4
    seen: set[int] = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if "{item_id}" not in operation.path:
            continue
        for item in ids:

            @given(case=operation.as_strategy(path_parameters={"item_id": item}))
            @settings(
                max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
            )
            def fuzz(case):
                seen.add(case.call_and_validate(checks=CHECKS).status_code)

            fuzz()
    assert max(seen) < 500 and {200, 206} & seen, seen
