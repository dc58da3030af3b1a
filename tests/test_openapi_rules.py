"""The OpenAPI document and the validators are one rule: each field's value is accepted by
the API exactly when it is valid in the published document, and the other way round."""

from __future__ import annotations

from typing import Any, Final

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from starmap.app import create_app
from starmap.http.openapi import build
from starmap.http.schemas import LikeIn, StarIn, UserIn, converter
from starmap.rules import EMAIL_PATTERN, ID_PATTERN, MESSAGE_PATTERN, NAME_PATTERN
from starmap.settings import load_settings

VALID: Final[dict[type, dict[str, Any]]] = {
    StarIn: {"x": 0.5, "y": -0.5, "message": "hello"},
    UserIn: {"name": "Ada", "email": "ada@example.org"},
    LikeIn: {},
}
# Characters at every rule's edges: controls kept and refused, white space of several
# kinds, lone surrogates, separators and the characters of ids and addresses.
TRICKY: Final = (
    "aZ09_-.@ \t\n\r\x00\x07\x1f\x7f\x85\x9f\xa0\xad\u2028\u3000\u200b\u202e\u2066\u3164\ufeff\ud800\udfffé✨"
)
EDGES: Final = [
    "", " ", "  ", "ab", "a\n", "ab\n", "a@b.co", " a@b.co ", "a@b.co\n", "a@b", "@b.co", "a@@b.co",
    "x" * 280, "x" * 281, "y" * 64, "y" * 65, "active", "popular", "batch", "ok\t", "a\u2028b",
]  # fmt: skip


def strings(pattern: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(EDGES),
        st.text(alphabet=TRICKY, max_size=300),
        st.text(st.characters(exclude_categories=()), max_size=30),
        st.from_regex(pattern),
        st.from_regex(pattern).map(lambda s: s + "\n"),
        st.integers(),
        st.none(),
        st.booleans(),
    )


NUMBERS: Final = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1.5, max_value=101),
    st.sampled_from([-1, 1, 0, 100, -1.0000001, 100.0000001]),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
FIELDS: Final = {
    (StarIn, "x"): NUMBERS,
    (StarIn, "y"): NUMBERS,
    (StarIn, "brightness"): NUMBERS,
    (StarIn, "message"): strings(MESSAGE_PATTERN),
    (StarIn, "id"): strings(ID_PATTERN),
    (StarIn, "user_id"): strings(ID_PATTERN),
    (UserIn, "name"): strings(NAME_PATTERN),
    (UserIn, "email"): strings(EMAIL_PATTERN),
    (LikeIn, "user_id"): strings(ID_PATTERN),
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings_ = load_settings({"DATA_DIR": str(tmp_path_factory.mktemp("doc"))})
    return build(create_app(settings_), title="t", version="v")


def accepted_by_the_api(cls: type, body: dict[str, Any]) -> bool:
    try:
        converter.structure(body, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError):
        return False
    return True


def test_the_examples_are_valid(document: dict[str, Any]) -> None:
    """What /docs fills in for "try it out" is accepted by the document and by the API."""
    schemas, seen = document["components"]["schemas"], set()
    for operations in document["paths"].values():
        for operation in operations.values():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                continue
            name = media["schema"]["$ref"].rsplit("/", 1)[1]
            Draft202012Validator(schemas[name]).validate(media["example"])
            cls = next(c for c in VALID if c.__name__ == name)
            assert accepted_by_the_api(cls, media["example"])
            seen.add(name)
    assert seen == {c.__name__ for c in VALID}


def test_every_field_of_every_body_is_checked() -> None:
    import attrs

    assert {(cls, f.name) for cls in VALID for f in attrs.fields(cls)} == set(FIELDS)


@pytest.mark.parametrize(("cls", "field"), list(FIELDS), ids=lambda v: getattr(v, "__name__", v))
def test_the_validator_and_the_document_agree(document: dict[str, Any], cls: type, field: str) -> None:
    schema = document["components"]["schemas"][cls.__name__]
    checker = Draft202012Validator(schema)
    seen = {True: 0, False: 0}

    @settings(max_examples=400, deadline=None)
    @given(FIELDS[(cls, field)])
    def agree(value: Any) -> None:
        body = {**VALID[cls], field: value}
        api, doc = accepted_by_the_api(cls, body), checker.is_valid(body)
        assert api == doc, (
            f"{cls.__name__}.{field}={value!r}: API {'accepts' if api else 'refuses'}, document says {doc}"
        )
        seen[api] += 1

    agree()
    assert seen[True] and seen[False], f"{cls.__name__}.{field}: only one side was exercised: {seen}"
