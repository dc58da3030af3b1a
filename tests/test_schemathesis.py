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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_keeps_its_document(api_schema: BaseSchema, mode: GenerationMode) -> None:
    """Each operation in turn (schemathesis' own pytest plugin does not run on pytest 9 yet)."""
    failures: dict[str, str] = {}
    for operation in operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Case[Any]) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            continue  # nothing about this operation can be made invalid (no parameters, no body)
        except Exception as exc:  # every operation is tried; the failures are listed together
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_every_operation_is_exercised(api_schema: BaseSchema) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert {"POST /stars", "POST /stars/{id}/like", "PUT /users/{id}", "DELETE /admin/stars"} <= labels
    assert len(labels) >= 20
