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

Pure: no Google imports, no I/O.
"""

from __future__ import annotations

import json
from typing import Iterable

from .tables import MARKET_ROWS_FIELD
from .transform import MarketRows


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


def encode(groups: Iterable[MarketRows]) -> bytes:
    """Staging NDJSON of grouped market rows (transform.markets_for_object): exactly
    `json.dumps({**head, "market_rows": rows}, separators=(",", ":"))` per market, one per line."""
    encode_one = _encode
    lines = []
    for head, rows in groups:
        line = dict(head)
        line[MARKET_ROWS_FIELD] = rows
        lines.append(encode_one(line))
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
