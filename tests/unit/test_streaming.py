"""Unit tests of oddsbatch.streaming: a file read one bookmaker at a time stages exactly the
bytes of the whole-file transform, and refuses what the whole-file transform refuses."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import oddsbatch  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "shared"))

from oddsbatch import staging, streaming, transform  # noqa: E402
from oddsbatch.errors import BadInputError  # noqa: E402
from oddsbatch.paths import parse_object_name  # noqa: E402
from oddsbatch.synth import synthesize_day  # noqa: E402

from .test_transform import SAMPLES, load  # noqa: E402

CREATED = datetime(2025, 2, 3, 12, 0, tzinfo=timezone.utc)


def streamed(name: str, data: bytes, generation: int = 9) -> tuple[bytes, int, str | None]:
    f = streaming.StreamedFile(parse_object_name(name), streaming.stream_of(data), generation, CREATED)
    out = b"".join(f.texts())
    return out, f.rows, f.snapshot


def whole(name: str, data: bytes, generation: int = 9) -> bytes:
    return staging.encode(transform.markets_for_object(name, data, generation, CREATED))


def files():
    for sample, (name, _) in SAMPLES.items():
        yield name, load(sample)
    yield from synthesize_day(date(2025, 11, 2), games=2, snapshots=2, seed=11)
    yield from synthesize_day(date(2025, 2, 3), games=2, snapshots=2, seed=5, price_format="decimal",
                              historical=True)


def test_the_parser_is_the_c_backend():
    import ijson

    assert ijson.backend == "yajl2_c"  # the pinned wheel's C parser: the pure-Python one is ~10x slower


@pytest.mark.parametrize("name,data", list(files()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_streamed_file_stages_exactly_the_bytes_of_the_whole_file(name, data):
    try:
        expected = whole(name, data)
    except BadInputError as bad:
        with pytest.raises(BadInputError) as got:
            streamed(name, data)
        assert got.value.reason.split(":")[0] == bad.reason.split(":")[0]
        return
    out, rows, snapshot = streamed(name, data)
    groups = staging.decode(expected)
    assert out == expected
    assert rows == staging.row_count(groups)
    assert snapshot == (groups[0][0]["snapshot_timestamp"] if groups else None)


def _event(bookmakers, **fields):
    return {"id": "e1", "commence_time": "2025-02-04T00:00:00Z", "home_team": "Boston Celtics",
            "away_team": "Los Angeles Lakers", **fields, "bookmakers": bookmakers}


def _book(key, price=-110, point=None, market="spreads"):
    outcome = {"name": "Boston Celtics", "price": price, **({"point": point} if point is not None else {})}
    return {"key": key, "title": key, "markets": [{"key": market, "outcomes": [outcome]}]}


NAME = "odds-api/game-lines/2025-02-03/20250203_120000-snap-1200.json"


def test_fields_after_the_bookmakers_and_a_wrapper_after_its_data_are_read_as_well():
    event = {"bookmakers": [_book("a"), _book("b", -120)], "id": "e1", "commence_time": "2025-02-04T00:00:00Z"}
    wrapped = {"data": [event], "timestamp": "2025-02-03T11:55:00Z", "previous_timestamp": None,
               "next_timestamp": "2025-02-03T12:00:00Z"}
    for payload in (event, wrapped):
        data = json.dumps(payload).encode()
        assert streamed(NAME, data)[0] == whole(NAME, data) != b""


def test_the_price_format_is_the_whole_files():
    data = json.dumps(_event([_book("a", 150), _book("b", 1.5)])).encode()  # one decimal price: all decimal
    out = streamed(NAME, data)[0]
    assert out == whole(NAME, data) and b'"price_format":"decimal"' in out


@pytest.mark.parametrize("payload,reason", [
    (b"[1, 2]", "wrong shape"),
    (b'{"message": "quota"}', "wrong shape"),
    (b'[{"id": "e1", "commence_time": "soon", "bookmakers": []}]', "event e1 commence_time"),
    (json.dumps(_event([_book("a"), {"key": "b", "markets": [{"key": "h2h", "outcomes": [{"name": "X"}]}]}])).encode(),
     "missing price"),
    (json.dumps(_event([_book("a")]))[:-20].encode(), "truncated JSON"),
    (json.dumps(_event([_book("a")])).encode() + b" x", "invalid JSON"),
])
def test_what_the_whole_file_transform_refuses_is_refused(payload, reason):
    with pytest.raises(BadInputError) as bad:
        whole(NAME, payload)
    with pytest.raises(BadInputError) as got:
        streamed(NAME, payload)
    assert reason in got.value.reason and reason.split()[0] in bad.value.reason


def test_a_bookmaker_twice_in_one_event_is_not_streamable():
    data = json.dumps(_event([_book("a"), _book("b"), _book("a", -130)])).encode()
    with pytest.raises(streaming.NotStreamable):
        streamed(NAME, data)


def test_a_byte_order_mark_is_skipped():
    data = json.dumps(_event([_book("a")])).encode()
    assert streamed(NAME, b"\xef\xbb\xbf" + data)[0] == whole(NAME, data)
