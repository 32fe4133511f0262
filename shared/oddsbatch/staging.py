"""The staging format: newline-delimited JSON, one line per (event, bookmaker, market) of a file.

A line holds the market's head columns once and its rows under `market_rows`, each row with
only its own non-null columns (a missing field loads as NULL):

    {"game_date":"2025-02-03","game_id":"e1",...,"source_generation":7,
     "market_rows":[{"player_name":"A B","player_lookup":"ab","line":10.5,"over_price_decimal":1.91,...},...]}

Why not one flat line per row: a player-props row repeats ~20 head columns (event, bookmaker,
market, provenance) that make up most of its bytes. Flat, a 1,000-file date staged ~460 MB
for 59 MB of input and serializing it cost 7x the JSON parse of the input; grouped, it is
a fraction of that (bench/RESULTS.md), and the load job reads that much less. The MERGE
un-nests the rows again (sql.deduplicated_source_sql), so the target table is unchanged.

Writing it was most of a file's transform cost, so the holder's path never builds a row as a
dict: `transform.staged_for_object` writes each line's text straight from the parsed values,
from texts it makes once per file (a player's name and lookup, a line, a price's two columns).
`encode` here is the reference it is held to: `json.dumps` of each market of dict rows
(`transform.markets_for_object`, the same rows for tests and checks), byte for byte the same
text (tests/unit/test_staging.py, and checked on every bench run, bench/transform_bench.py).

Pure: no Google imports, no I/O.
"""

from __future__ import annotations

import json
from typing import Iterable

from .tables import MARKET_ROWS_FIELD

# One market's staged rows, grouped: (head, [row columns]). The head holds the columns every row
# of the market shares (TableSpec.head_columns); each row dict holds only its own non-null
# columns (TableSpec.line_columns; absent = NULL). Staging stays this narrow, and
# `transform.rows_from_payload` flattens it into full rows for everything else.
MarketRows = tuple[dict, list[dict]]


def _make_encoder():
    """One compact encoder for the whole process: `json.dumps(value, separators=...)` builds a
    JSONEncoder and a C encoder on every call, which costs more than encoding a small market."""
    base = json.JSONEncoder(separators=(",", ":"))
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython always has _json
        return base.encode
    encode = c_make_encoder({}, base.default, json.encoder.encode_basestring_ascii, None, ":", ",",
                            False, False, True)
    return lambda value: "".join(encode(value, 0))


_encode = _make_encoder()
quote = json.encoder.encode_basestring_ascii  # a JSON string exactly as `_encode` writes it
number_text = repr  # a finite float or an int exactly as `_encode` writes it (float.__repr__, int.__repr__)


def object_text(mapping: dict) -> str:
    """The JSON object exactly as a staging line writes it."""
    return _encode(mapping)


def encode(groups: Iterable[MarketRows]) -> bytes:
    """Staging NDJSON of grouped market rows (transform.markets_for_object): exactly
    `json.dumps({**head, "market_rows": rows}, separators=(",", ":"))` per market, one per line."""
    lines = []
    for head, rows in groups:
        line = dict(head)
        line[MARKET_ROWS_FIELD] = rows
        lines.append(_encode(line))
    if not lines:
        return b""
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def decode(data: bytes) -> list[MarketRows]:
    """The inverse of `encode` (for tests and checks: what a load job would read)."""
    groups = []
    for line in data.decode("utf-8").splitlines():
        head = json.loads(line)
        rows = head.pop(MARKET_ROWS_FIELD)
        groups.append((head, rows))
    return groups


def row_count(groups: Iterable[MarketRows]) -> int:
    return sum(len(rows) for _, rows in groups)
