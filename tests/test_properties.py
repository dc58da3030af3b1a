"""Property-based tests (hypothesis): the brightness model, validation, the table stores."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from starmap.errors import AlreadyExists, NotFound, PreconditionFailed
from starmap.settings import load_settings
from starmap.stars import Brightness
from starmap.storage import Op, TableStore, iter_entities, open_store

from .rig import Azurite, StarmapProcess

# -- the brightness model ------------------------------------------------------------------

models = st.builds(
    Brightness,
    half_life=st.floats(1, 1e6),
    boost=st.floats(0, 100),
    floor=st.floats(0, 100),
)
levels = st.floats(0, 100)
times = st.floats(0, 1e9)
spans = st.floats(0, 1e7)


@given(models, levels, times, spans, spans)
def test_brightness_only_fades_and_never_below_the_floor(
    model: Brightness, b0: float, t0: float, a: float, b: float
) -> None:
    early, late = sorted((a, b))
    sooner, later = model.at(b0, t0, t0 + early), model.at(b0, t0, t0 + late)
    assert later <= sooner + 1e-9
    assert later >= model.floor
    assert sooner <= max(b0, model.floor) + 1e-9


@given(models, levels, times, spans, st.integers(1, 1000))
def test_a_like_never_dims_and_never_passes_100(
    model: Brightness, b0: float, t0: float, dt: float, count: int
) -> None:
    now = t0 + dt
    before = model.at(b0, t0, now)
    after = model.liked(b0, t0, now, count)
    assert after <= 100
    assert after >= min(100, before) - 1e-9
    assert math.isclose(after, min(100.0, before + model.boost * count), rel_tol=1e-9, abs_tol=1e-9)


# -- validation: any JSON anywhere is a 2xx or a 4xx, never a 5xx ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["x", "y", "message", "brightness", "user_id", "id", "name", "email"]
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=8)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("properties")
    proc = StarmapProcess(
        workdir, {"ENVIRONMENT": "test", "DATA_DIR": str(workdir / "data"), "API_RATE_LIMIT_TIMES": "1000000"}
    )
    proc.start()
    yield proc.url
    proc.stop()


def send(method: str, url: str, body: Any) -> int:
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=bodies | json_values, target=st.sampled_from(["star", "user", "put", "like"]))
def test_any_json_anywhere_is_never_a_server_error(api: str, body: Any, target: str) -> None:
    method, path = {
        "star": ("POST", "/stars"),
        "user": ("POST", "/users"),
        "put": ("PUT", "/users/someone"),
        "like": ("POST", "/stars/nowhere/like"),
    }[target]
    status = send(method, f"{api}{path}", body)
    assert status < 500, (method, path, body, status)


# -- the table stores against a model --------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "o'k", "星", "x or 1 eq 1"])
VALUES = st.integers(-(2**40), 2**40) | st.text(max_size=20) | st.booleans() | st.floats(-1e9, 1e9)
Model = dict[tuple[str, str], tuple[dict[str, Any], str]]


class StoreMachine(RuleBasedStateMachine):
    """Random operations on a real store; a dict is the model of what it must hold.

    ETags are drawn from the ones the store gave out, so stale and current ones both
    come up: an update or delete with a stale one must fail and change nothing.
    """

    backend = "sqlite"
    workdir: Path = Path(".")
    connection_string = ""
    etags = Bundle("etags")

    @initialize()
    def open(self) -> None:
        self.loop = asyncio.new_event_loop()
        env = {
            "DATA_DIR": str(self.workdir / uuid.uuid4().hex),
            "STORAGE_TABLE_PREFIX": "p" + uuid.uuid4().hex[:10],
        }
        if self.backend == "azurite":
            env["AZURE_STORAGE_CONNECTION_STRING"] = self.connection_string
        self.store: TableStore = open_store(load_settings(env, root=self.workdir))
        self.run(lambda: self.store.ensure_tables(["Stars"]))
        self.model: Model = {}

    def run(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` made and awaited on the loop, as the service makes every store call (a
        single write hands back a future of the running loop, not a coroutine)."""

        async def on_the_loop() -> Any:
            return await call()

        return self.loop.run_until_complete(on_the_loop())

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.run(self.store.close)
            self.loop.close()

    @rule(target=etags, pk=KEYS, rk=KEYS, value=VALUES)
    def insert(self, pk: str, rk: str, value: Any) -> str:
        entity = {"PartitionKey": pk, "RowKey": rk, "v": value}
        try:
            etag: str = self.run(lambda: self.store.insert("Stars", entity))
        except AlreadyExists:
            assert (pk, rk) in self.model
            return self.model[(pk, rk)][1]  # the current ETag: it goes stale by the next write
        assert (pk, rk) not in self.model
        self.model[(pk, rk)] = ({"v": value}, etag)
        return etag

    @rule(target=etags, pk=KEYS, rk=KEYS, value=VALUES, etag=etags)
    def update(self, pk: str, rk: str, value: Any, etag: str) -> str:
        entity = {"PartitionKey": pk, "RowKey": rk, "v": value}
        try:
            new: str = self.run(lambda: self.store.update("Stars", entity, etag))
        except NotFound:
            assert (pk, rk) not in self.model
            return etag
        except PreconditionFailed:
            assert self.model[(pk, rk)][1] != etag
            return etag
        assert self.model[(pk, rk)][1] == etag
        self.model[(pk, rk)] = ({"v": value}, new)
        return new

    @rule(target=etags, pk=KEYS, rk=KEYS, value=VALUES)
    def upsert(self, pk: str, rk: str, value: Any) -> str:
        etag: str = self.run(
            lambda: self.store.upsert("Stars", {"PartitionKey": pk, "RowKey": rk, "v": value})
        )
        self.model[(pk, rk)] = ({"v": value}, etag)
        return etag

    @rule(pk=KEYS, rk=KEYS, etag=etags | st.none())
    def delete(self, pk: str, rk: str, etag: str | None) -> None:
        try:
            self.run(lambda: self.store.delete("Stars", pk, rk, etag=etag))
        except PreconditionFailed:
            assert self.model[(pk, rk)][1] != etag
            return
        if (pk, rk) in self.model:
            assert etag is None or self.model[(pk, rk)][1] == etag
        self.model.pop((pk, rk), None)

    @rule(pk=KEYS, rows=st.lists(KEYS, min_size=1, max_size=4, unique=True), value=VALUES)
    def batch_insert(self, pk: str, rows: list[str], value: Any) -> None:
        ops = [Op("insert", {"PartitionKey": pk, "RowKey": rk, "v": value}) for rk in rows]
        try:
            etags = self.run(lambda: self.store.batch("Stars", ops))
        except AlreadyExists:
            assert any((pk, rk) in self.model for rk in rows)
            return  # all or nothing: the invariant checks nothing was applied
        assert not any((pk, rk) in self.model for rk in rows)
        for rk, etag in zip(rows, etags, strict=True):
            self.model[(pk, rk)] = ({"v": value}, etag)

    @invariant()
    def store_matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        rows = self.run(lambda: _all(self.store))
        assert rows == {key: (props, etag) for key, (props, etag) in self.model.items()}


async def _all(store: TableStore) -> Model:
    found: Model = {}
    async for s in iter_entities(store, "Stars"):
        props = {k: v for k, v in s.entity.items() if k not in ("PartitionKey", "RowKey")}
        found[(s.partition_key, s.row_key)] = (props, s.etag)
    return found


@pytest.mark.slow
def test_stores_agree_with_the_model(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    attributes: dict[str, Any] = {"backend": backend, "workdir": tmp_path}
    if backend == "azurite":
        server: Azurite = request.getfixturevalue("azurite")
        attributes["connection_string"] = server.connection_string
    machine = type(f"{backend.title()}StoreMachine", (StoreMachine,), attributes)
    fast = backend == "sqlite"  # Azurite takes ~165 writes/s: fewer, shorter runs there
    case = machine.TestCase  # type: ignore[attr-defined]
    case.settings = settings(
        max_examples=25 if fast else 5,
        stateful_step_count=25 if fast else 10,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    case().runTest()


COORD = st.floats(-1, 1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.tuples(COORD, COORD), max_size=300),
    corners=st.tuples(COORD, COORD, COORD, COORD),
)
def test_a_viewport_is_exactly_the_stars_inside_it(
    points: list[tuple[float, float]], corners: tuple[float, float, float, float]
) -> None:
    """The grid (whole cells taken without a look, edge cells star by star) against a scan."""
    from starmap.index import StarIndex
    from starmap.stars import BBox, Star

    # Created out of list order (ties too): each cell's keys must come out sorted all the same.
    stars = [
        Star(f"s{i}", x, y, "m", 100.0, 0.0, 0, float(i * 5 % 7), 0.0) for i, (x, y) in enumerate(points)
    ]
    x1, x2 = sorted(corners[:2])
    y1, y2 = sorted(corners[2:])
    box = BBox(x1, y1, x2, y2)
    expected = sorted((s for s in stars if box.contains(s.x, s.y)), key=lambda s: (s.created_at, s.id))
    index = StarIndex(stars)
    assert index.in_box(box) == expected
    paged, cursor = index.page(limit=7, bbox=box)
    while cursor is not None:  # page after page: no gap, no duplicate, the same order
        more, cursor = index.page(limit=7, cursor=cursor, bbox=box)
        paged += more
    assert paged == expected
