"""schemathesis against /openapi.json of a real process on the embedded store.

Every operation gets generated requests, valid and invalid; no answer may be a
5xx, and every answer must match the document: its status listed, its content
type and its body schema as documented. The event streams are left out (a stream
never ends, so there is no answer to check); tests/test_sse.py covers them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import BaseSchema, Case, GenerationMode, checks
from schemathesis.core.result import Ok
from schemathesis.openapi import from_url
from schemathesis.schemas import APIOperation

from .rig import StarmapProcess

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StarmapProcess]:
    workdir: Path = tmp_path_factory.mktemp("schemathesis")
    proc = StarmapProcess(
        workdir,
        {
            "ENVIRONMENT": "test",
            "DATA_DIR": str(workdir / "data"),
            "ADMIN_API_KEY": "schemathesis-admin-key",
            "API_RATE_LIMIT_TIMES": "1000000",
        },
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_schema(api_process: StarmapProcess) -> BaseSchema:
    return from_url(f"{api_process.url}/openapi.json").exclude(path_regex="^/events/")


def operations(schema: BaseSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    """Every operation of the document; a part schemathesis cannot read fails the test."""
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return found


def _any_string(schema: dict[str, Any]) -> bool:
    """A parameter any string satisfies (an empty path segment cannot even be sent)."""
    return (
        schema.get("type") == "string"
        and set(schema) <= {"type", "minLength"}
        and schema.get("minLength", 0) <= 1
    )


def nothing_to_make_invalid(schema: BaseSchema, label: str) -> bool:
    """No body, and no parameter that a request could get wrong: nothing can be invalid."""
    method, path = label.split(" ", 1)
    operation = schema.raw_schema["paths"][path][method.lower()]
    params = operation.get("parameters", [])
    return "requestBody" not in operation and all(_any_string(p["schema"]) for p in params)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_keeps_its_document(
    api_schema: BaseSchema, mode: GenerationMode, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each operation in turn (schemathesis' own pytest plugin does not run on pytest 9 yet).

    Every operation must really be called; one hypothesis cannot generate for is named,
    and allowed only in negative mode for an operation with nothing to make invalid.
    """
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    unsatisfiable: list[str] = []
    for operation in operations(api_schema):
        label = operation.label
        calls[label] = 0

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Case[Any]) -> None:
            calls[operation.label] += 1  # noqa: B023 - called in this same iteration
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            unsatisfiable.append(label)
        except Exception as exc:  # every operation is tried; the failures are listed together
            failures[label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    with capsys.disabled():  # reported, not silent
        print(f"\nschemathesis {mode}: {sum(calls.values())} requests over {len(calls)} operations; "
              f"nothing to make invalid: {', '.join(sorted(unsatisfiable)) or 'none'}")  # fmt: skip
    if mode is GenerationMode.POSITIVE:
        assert not unsatisfiable, unsatisfiable
        assert all(calls.values()), [label for label, n in calls.items() if not n]
    else:
        assert all(nothing_to_make_invalid(api_schema, label) for label in unsatisfiable), unsatisfiable
        assert all(n for label, n in calls.items() if label not in unsatisfiable)


# The whole contract: a route that goes missing from the document fails here.
OPERATIONS = {
    "GET /", "GET /config.json", "GET /static/{name}", "GET /docs", "GET /docs/assets/{name}",
    "GET /openapi.json", "GET /metrics", "GET /health", "GET /health/liveness", "GET /health/readiness",
    "GET /stars", "POST /stars", "GET /stars/{id}", "DELETE /stars/{id}", "POST /stars/{id}/like",
    "GET /stars/batch/{ids}", "GET /stars/active", "GET /stars/popular", "GET /stars/changes",
    "GET /users", "POST /users", "GET /users/{id}", "PUT /users/{id}", "DELETE /users/{id}",
    "GET /users/{id}/stars", "DELETE /admin/stars", "GET /admin/status",
    "GET /debug/actors", "GET /debug/actors/{kind}/{key}", "GET /debug/table-info", "GET /debug/active-stars",
    "POST /debug/add-test-star", "GET /debug/cache-stats",
}  # fmt: skip


def test_the_document_lists_every_operation(api_schema: BaseSchema) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, methods in api_schema.raw_schema["paths"].items()
        for method in methods
        if not path.startswith("/events/")
    }
    assert documented == OPERATIONS
    # What the generated requests cover: all of it but the document's own URL, which
    # schemathesis leaves out.
    assert {op.label for op in operations(api_schema)} == OPERATIONS - {"GET /openapi.json"}
