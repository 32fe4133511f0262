"""Odds API snapshot files -> staged rows (exactly `TableSpec.staged_columns`).

Pure: no Google imports, no I/O except in `cmd_transform`. One `json.loads` per file.

One walk over a file's outcomes (`_walk`) validates them and pivots them into rows; two thin
writers consume it: `staged_for_object`, the holder's path, writes the staging NDJSON
(staging.py) straight from the walked values, from texts made once (a player's name and lookup,
a line, a price's two columns), never a dict per row; `markets_for_object` / `rows_for_object`
build the same rows as dicts, for tests and checks. The text is byte for byte
`staging.encode` of the dicts (tests/unit/test_staging.py, and every bench run). A file's
errors come out in one order whichever writer asks (`_rows_of`).

Rules this module decides (tests in tests/unit/test_transform.py pin each one):

* Payload shapes: a list of events (sport odds), one event (event odds), or the historical
  wrapper `{timestamp, previous_timestamp, next_timestamp, data}` around either. A dict is
  a wrapper when it has `data` and neither `id` nor `bookmakers`.
* Snapshot time: the wrapper's `timestamp` ("wrapper"), else the `YYYYMMDD_HHMMSS` of the
  object name ("object_name"), else the object's creation time ("object_created").
* Price format, decided once per file: AMERICAN when there is at least one price and every
  price is a whole number (JSON int, or a float with no fraction such as -110.0) with
  |p| >= 100; DECIMAL otherwise. American prices can never lie in (-100, 100), and a
  decimal file always holds some price below 100 (any two-way market has a side < 2.0), so
  a decimal price written as a JSON int (2, 3) lands in a decimal file. The one ambiguous
  file, every price a whole number >= 100 in decimal (only 100/1 long shots), reads as
  american. In a decimal file every price must be > 1, else BadInputError: that also
  catches files mixing the two formats. The source value is kept exactly; the other
  format is converted (see `american_to_decimal` / `decimal_to_american`).
* Game lines: one row per outcome. Two outcomes with the same natural key in one file
  (same event, bookmaker, market, name, description, point) are one row: the LAST one in
  payload order wins, with its own market's head columns.
* Player props: outcomes pivoted per (event, bookmaker, market, player, line); player =
  outcome `description`, side = outcome `name` (Over/Under/Yes/No, any case). An outcome
  without a description whose name is not a side (first-basket style, players listed by
  name) is the player's "yes" side. In a `player_*` market an outcome without a player, or
  with a description but a name that is no side, is BadInputError. Markets that are not
  `player_*` keep the outcomes that have a description and a side name and SKIP the others
  (team markets such as h2h/totals in a props file are not player props). A side given
  twice for one (player, line) keeps the LAST price in payload order.
* Points (outcome point, prop line) land in NUMERIC columns, an exact type BigQuery accepts
  in keys and PARTITION BY: a point NUMERIC cannot hold exactly (over 9 decimals, over 29
  integer digits, an integer beyond 2**53, NaN/infinity) is BadInputError.
* Every value fits its column or the file is BadInputError: american prices INT64, decimal
  prices finite FLOAT64, timestamps within years 1-9999 UTC. One bad value quarantines its
  file, never the load of the whole round.
"""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from . import teams
from .errors import BadInputError
from .paths import ObjectRef, endpoint_of, parse_object_name
from .staging import MarketRows, number_text, object_text, quote
from .tables import MARKET_ROWS_FIELD, TableSpec, table_for_endpoint

SNAPSHOT_SOURCES = ("wrapper", "object_name", "object_created")
PRICE_FORMATS = ("american", "decimal")
SIDES = ("over", "under", "yes", "no")
_ONE_MINUTE = timedelta(minutes=1)
_ID_RE = re.compile(r"^[0-9A-Za-z]+$")
_NON_LETTERS = re.compile(r"[^a-z]")


# ---------------------------------------------------------------------------------------------
# Value formatting: the one place that decides how DATE and TIMESTAMP values are written.


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC: "YYYY-MM-DDTHH:MM:SSZ", with ".ffffff" only when there are microseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    elif moment.utcoffset():
        moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_date(day: date) -> str:
    """DATE as "YYYY-MM-DD"."""
    return day.isoformat()


@lru_cache(maxsize=8192)
def _parse_timestamp_text(text: str) -> tuple[datetime, str]:
    moment = datetime.fromisoformat(text.strip())  # 3.11: accepts "Z" and 1-9 fraction digits
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    else:
        moment = moment.astimezone(timezone.utc)
    return moment, format_timestamp(moment)


def _timestamp(value: Any, what: str) -> tuple[datetime | None, str | None]:
    """(datetime UTC, formatted) of an optional payload timestamp; BadInputError if malformed."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        raise BadInputError(f"{what} is not a timestamp string: {value!r:.60}")
    try:
        return _parse_timestamp_text(value)
    except ValueError:
        raise BadInputError(f"{what} is not an ISO 8601 timestamp: {value!r:.60}") from None
    except OverflowError:  # an offset that moves it outside years 1-9999, BigQuery's TIMESTAMP range
        raise BadInputError(f"{what} is outside the TIMESTAMP range (years 1 to 9999 UTC): {value!r:.60}") from None


# ---------------------------------------------------------------------------------------------
# Prices.


def _round_half_away(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))  # HALF_UP = away from zero


@lru_cache(maxsize=65536)
def decimal_to_american(price: float) -> int:
    """D >= 2 -> (D-1)*100; D < 2 -> -100/(D-1); rounded half away from zero, computed on the
    decimal digits the price was written with (1.32 -> -312.5 -> -313, not float noise)."""
    d = Decimal(repr(price))
    if d <= 1:
        raise ValueError(f"decimal price must be > 1, got {price!r}")
    if d >= 2:
        return _round_half_away((d - 1) * 100)
    return _round_half_away(Decimal(-100) / (d - 1))


@lru_cache(maxsize=65536)
def american_to_decimal(price: int) -> float:
    """A > 0 -> 1 + A/100; A < 0 -> 1 + 100/|A| (nearest float, not rounded to cents)."""
    if -100 < price < 100:
        raise ValueError(f"american price must satisfy |A| >= 100, got {price!r}")
    a = Decimal(price)
    if price > 0:
        return float(1 + a / 100)
    return float(1 + Decimal(100) / -a)


# Points (spreads, totals, prop lines) are stored as NUMERIC, BigQuery's exact decimal type:
# 29 digits before the decimal point, 9 after. Rows carry them as floats; a float's shortest
# repr is the decimal text the file held, which NUMERIC keeps exactly.
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#decimal_types
NUMERIC_INTEGER_LIMIT = 10 ** 29
NUMERIC_SCALE = 9
_EXACT_INT_LIMIT = 2 ** 53  # a larger integer has no exact float


def _exact_point(point: Any, name: str, where: str) -> float:
    """The point as the float a row carries, or BadInputError when NUMERIC cannot hold it exactly."""
    kind = type(point)
    if kind is float:
        if -1e15 < point < 1e15 and (point * 4).is_integer():  # whole, half and quarter points
            return point
        if math.isfinite(point):
            exact = Decimal(repr(point))
            if exact.as_tuple().exponent >= -NUMERIC_SCALE and abs(exact) < NUMERIC_INTEGER_LIMIT:
                return point
        raise _bad(f"point of outcome {name!r} in {where} is out of range for an exact NUMERIC line "
                   f"(at most 29 digits before the decimal point and 9 after): {point!r:.40}")
    if kind is int:
        if -_EXACT_INT_LIMIT <= point <= _EXACT_INT_LIMIT:
            return float(point)
        raise _bad(f"point of outcome {name!r} in {where} is out of range for an exact line: {str(point)[:40]}")
    raise _bad(f"point of outcome {name!r} in {where} is not a number: {point!r:.40}")


# The price columns: american INT64, decimal a finite FLOAT64 (BigQuery's load rejects the rest,
# and a rejected load would fail the whole round, not this file).
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#integer_types
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _convert(price: int | float, price_format: str) -> tuple[float, int]:
    """(decimal, american) of a source price already validated for the file's format;
    BadInputError when either is out of its column's range."""
    try:
        if price_format == "american":
            american = int(price)
            decimal = american_to_decimal(american)
        else:
            decimal = float(price)
            american = decimal_to_american(decimal)
        in_range = INT64_MIN <= american <= INT64_MAX and math.isfinite(decimal)
    except ArithmeticError:  # an integer no float holds, a Decimal beyond its context's precision
        in_range = False
    if not in_range:
        raise _bad(f"price {str(price)[:40]} ({price_format}) is out of range of the price columns "
                   f"(american INT64, decimal finite FLOAT64)")
    return decimal, american


# ---------------------------------------------------------------------------------------------
# Names.


@lru_cache(maxsize=65536)
def player_lookup(name: str) -> str:
    """NFKD, drop non-ASCII, lowercase, keep a-z: "Luka Dončić" -> "lukadoncic"."""
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return _NON_LETTERS.sub("", ascii_only.lower())


def us_eastern_utc_offset(moment: datetime) -> timedelta:
    """UTC offset of US/Eastern at a UTC moment (US rules since 2007, no tz database needed):
    -4 h from the second Sunday of March 07:00 UTC to the first Sunday of November 06:00 UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    year = moment.year
    march_first = date(year, 3, 1)
    dst_start = datetime(year, 3, 1 + (6 - march_first.weekday()) % 7 + 7, 7)
    november_first = date(year, 11, 1)
    dst_end = datetime(year, 11, 1 + (6 - november_first.weekday()) % 7, 6)
    return timedelta(hours=-4) if dst_start <= moment < dst_end else timedelta(hours=-5)


def us_eastern_date(moment: datetime) -> date:
    """The US/Eastern calendar date of a UTC moment (the scraper's game date of a tip-off)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return (moment + us_eastern_utc_offset(moment)).date()


# ---------------------------------------------------------------------------------------------
# Parsing.


def _bad(reason: str) -> BadInputError:
    return BadInputError(" ".join(reason.split()))  # always one line


def _reject_constant(token: str):
    raise _bad(f"JSON holds {token}, which is not a number")


def parse_payload(data: bytes | str) -> Any:
    """bytes -> the decoded JSON document; BadInputError saying why it is not one."""
    if isinstance(data, str):
        text = data
    else:
        if not data:
            raise _bad("empty file (0 bytes)")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    stripped = text.strip()
    if not stripped:
        raise _bad("empty file (whitespace only)")
    if stripped[0] == "<":
        raise _bad(f"HTML/XML page, not JSON: {stripped[:60]!r}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise _bad(f"truncated JSON: {exc.msg} at char {exc.pos} of {len(text)}") from None
        raise _bad(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _bad("invalid JSON: nested too deeply") from None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def split_payload(payload: Any) -> tuple[list[dict], dict | None]:
    """(events, wrapper or None) of any accepted shape; BadInputError for any other shape."""
    wrapper = None
    body = payload
    if isinstance(payload, dict) and "data" in payload and "id" not in payload and "bookmakers" not in payload:
        wrapper = payload
        body = payload["data"]
        where = "the historical wrapper's data"
    else:
        where = "the payload"
    if isinstance(body, dict):
        events = [body]
    elif isinstance(body, list):
        events = body
    else:
        raise _bad(f"wrong shape: {where} is a JSON {_type_name(body)}, expected an event object or a list of events")
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise _bad(f"wrong shape: item {i} of the event list is a JSON {_type_name(event)}, not an object")
        if "id" not in event and "bookmakers" not in event:
            keys = ", ".join(sorted(map(str, event))[:6]) or "none"
            message = event.get("message")
            detail = f" (message: {message!r:.80})" if isinstance(message, str) else ""
            raise _bad(f"wrong shape: object without id or bookmakers (keys: {keys}){detail}")
    return events, wrapper


def _required_str(obj: dict, key: str, what: str) -> str:
    value = obj.get(key)
    if value is None or value == "":
        raise _bad(f"missing {what}")
    if not isinstance(value, str):
        raise _bad(f"{what} is a JSON {_type_name(value)}, not a string")
    return value


def _optional_str(obj: dict, key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _bad(f"{what} is a JSON {_type_name(value)}, not a string")


def _required_list(obj: dict, key: str, what: str) -> list:
    value = obj.get(key)
    if value is None:
        raise _bad(f"missing {what}")
    if not isinstance(value, list):
        raise _bad(f"{what} is a JSON {_type_name(value)}, not an array")
    return value


# ---------------------------------------------------------------------------------------------
# Rows.


def _snapshot(ref: ObjectRef, wrapper: dict | None, created: datetime | None) -> tuple[datetime, str, str]:
    if wrapper is not None:
        moment, text = _timestamp(wrapper.get("timestamp"), "wrapper timestamp")
        if moment is not None:
            return moment, text, "wrapper"
    if ref.name_time is not None:
        return ref.name_time, format_timestamp(ref.name_time), "object_name"
    if created is not None:
        moment = created.replace(tzinfo=timezone.utc) if created.tzinfo is None else created.astimezone(timezone.utc)
        return moment, format_timestamp(moment), "object_created"
    raise _bad(f"no snapshot time: no wrapper timestamp, no YYYYMMDD_HHMMSS in the name, no creation time: {ref.name}")


# How a walk over a file's outcomes groups them into rows. Player props: a row per (event,
# bookmaker, market, player, line), [player, line, over, under, yes, no] with each side's source
# price or None. Game lines: a row per outcome, (name, description, point, price), None once a
# later outcome with its natural key replaced it.
_SIDE_SLOT = {s: i for i, s in enumerate(SIDES, 2)}
_SIDE_COLUMNS = {s: (f"{s}_price_decimal", f"{s}_price_american") for s in SIDES}
_YES = _SIDE_SLOT["yes"]
_PROP_PRICE_COLUMNS = tuple(_SIDE_COLUMNS.values())
_LINE_PRICE_COLUMNS = (("price_decimal", "price_american"),)


class _Made(dict):
    """A cache: the value of a key met for the first time is made by `make` and kept."""

    __slots__ = ("make",)

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        value = self[key] = self.make(key)
        return value


def _text_or_null(value: str | None) -> str:
    """A JSON string or null, exactly as `object_text` writes it."""
    return "null" if value is None else quote(value)


def _slot_of_side(name: str) -> int | None:
    """The slot in a props row of the side an outcome's name says (any case, spaces around), or None."""
    return _SIDE_SLOT.get(name.strip().lower())


class _Walk:
    """What `_walk` found in a file (or a piece of one)."""

    __slots__ = ("markets", "n_prices", "all_american", "irregular")

    def __init__(self, markets: list[tuple], n_prices: int, all_american: bool, irregular: bool):
        # [(bookmaker head columns, market key, market last_update, head text, source outcomes, rows)]
        self.markets = markets
        self.n_prices = n_prices  # how many prices
        self.all_american = all_american  # whether every price reads as american
        # A rule met whose error or price must be placed in payload order among the prices the
        # rows hold: an outcome whose side cannot be told, a props side given twice, a game line
        # given twice. The file is walked again, pricing as it goes (`_walk` with prices, `_rows_of`).
        self.irregular = irregular


def _walk(ref: ObjectRef, events: list[dict], wrapper: dict | None, snapshot: tuple,
          prices: dict | None = None) -> _Walk:
    """Validate the events and group their outcomes into rows, in one pass over the outcomes.

    Without `prices` (the file's price format is not known yet) a side that cannot be told
    marks the walk irregular and the outcome is left out. With `prices` (the file's
    `_Texts.pairs`) every price a row takes is converted in payload order (BadInputError when
    out of range), and a side that cannot be told is BadInputError at once."""
    snap_at, snap_text, snap_source = snapshot
    previous = _timestamp(wrapper.get("previous_timestamp"), "wrapper previous_timestamp")[1] if wrapper else None
    following = _timestamp(wrapper.get("next_timestamp"), "wrapper next_timestamp")[1] if wrapper else None
    game_date = format_date(ref.game_date)
    name_event = ref.event_id.lower() if ref.event_id else None
    props = ref.endpoint == "player-props"
    markets: list[tuple] = []
    exact_points: set[float] = set()  # float points _exact_point accepted (a point repeats across books)
    by_market: dict[tuple, dict] = {}  # props: (event, bookmaker, market) -> {(player, line): row}
    seen: dict[tuple, tuple[list, int]] = {}  # game lines: natural key -> (rows list, index) of its row
    slots = _Made(_slot_of_side)  # outcome name -> slot of its side in a props row, or None
    isfinite = math.isfinite
    n_prices = 0
    all_american = True
    irregular = False
    for event in events:
        event_id = _required_str(event, "id", "event id")
        if name_event is not None and event_id.lower() != name_event:
            raise _bad(f"event id {event_id} in the payload disagrees with {ref.event_id} in the object name")
        commence_at, commence_text = _timestamp(event.get("commence_time"), f"event {event_id} commence_time")
        home = _optional_str(event, "home_team", f"event {event_id} home_team")
        away = _optional_str(event, "away_team", f"event {event_id} away_team")
        event_base = {
            "game_date": game_date,
            "game_id": event_id,
            "sport_key": _optional_str(event, "sport_key", f"event {event_id} sport_key"),
            "sport_title": _optional_str(event, "sport_title", f"event {event_id} sport_title"),
            "commence_time": commence_text,
            "home_team": home,
            "away_team": away,
            "home_team_abbr": teams.abbreviation(home) or ref.home_abbr,
            "away_team_abbr": teams.abbreviation(away) or ref.away_abbr,
            "snapshot_timestamp": snap_text,
            "snapshot_source": snap_source,
            "previous_snapshot_timestamp": previous,
            "next_snapshot_timestamp": following,
            "minutes_before_tipoff": (commence_at - snap_at) // _ONE_MINUTE if commence_at else None,
        }
        event_text = object_text(event_base)[:-1]
        for bookmaker in _required_list(event, "bookmakers", f"bookmakers of event {event_id}"):
            if not isinstance(bookmaker, dict):
                raise _bad(f"wrong shape: a bookmaker of event {event_id} is a JSON {_type_name(bookmaker)}")
            book = _required_str(bookmaker, "key", f"bookmaker key in event {event_id}")
            where = f"event {event_id} bookmaker {book}"
            book_base = dict(event_base)
            book_base["bookmaker_key"] = book
            title = book_base["bookmaker_title"] = _optional_str(bookmaker, "title", f"{where} title")
            updated = book_base["bookmaker_last_update"] = _timestamp(bookmaker.get("last_update"),
                                                                      f"{where} last_update")[1]
            # the staging text of every head of this bookmaker: object_text(book_base) without its "}"
            book_text = (f'{event_text},"bookmaker_key":{quote(book)},"bookmaker_title":{_text_or_null(title)},'
                         f'"bookmaker_last_update":{_text_or_null(updated)}')
            for market in _required_list(bookmaker, "markets", f"markets of {where}"):
                if not isinstance(market, dict):
                    raise _bad(f"wrong shape: a market of {where} is a JSON {_type_name(market)}")
                key = market.get("key")
                if type(key) is not str or not key:
                    key = _required_str(market, "key", f"market key in {where}")  # raises
                mwhere = f"{where} market {key}"
                updated = _timestamp(market.get("last_update"), f"{mwhere} last_update")[1]
                head_text = f'{book_text},"market_key":{quote(key)},"market_last_update":{_text_or_null(updated)}'
                outcomes = market.get("outcomes")
                if type(outcomes) is not list:
                    outcomes = _required_list(market, "outcomes", f"outcomes of {mwhere}")  # raises
                rows: list = []
                last_player = last_point = last_row = None  # props: the row of the outcome before
                if props:
                    is_player_market = key.startswith("player_")
                    by_key = by_market.get((event_id, book, key))
                    if by_key is None:
                        by_key = by_market[event_id, book, key] = {}
                for outcome in outcomes:
                    if type(outcome) is not dict:
                        raise _bad(f"wrong shape: an outcome of {mwhere} is a JSON {_type_name(outcome)}")
                    try:  # subscripts are cheaper than get() calls, and props outcomes have all four
                        name, price = outcome["name"], outcome["price"]
                        point, description = outcome["point"], outcome["description"]
                    except KeyError:  # a game line without point or description, or a bad outcome
                        name, price = outcome.get("name"), outcome.get("price")
                        point, description = outcome.get("point"), outcome.get("description")
                    if type(name) is not str or not name:
                        name = _required_str(outcome, "name", f"outcome name in {mwhere}")  # raises
                    kind = type(price)
                    if kind is int:
                        if all_american and -100 < price < 100:
                            all_american = False
                    elif kind is float and isfinite(price):
                        if all_american and (not price.is_integer() or -100 < price < 100):
                            all_american = False
                    elif price is None:
                        raise _bad(f"missing price of outcome {name!r} in {mwhere}")
                    else:
                        raise _bad(f"price of outcome {name!r} in {mwhere} is not a number: {price!r:.40}")
                    if point is not None and (type(point) is not float or point not in exact_points):
                        point = _exact_point(point, name, mwhere)
                        exact_points.add(point)
                    if description is not None and type(description) is not str:
                        description = _optional_str(outcome, "description", f"description of outcome {name!r} in {mwhere}")
                    if not props:
                        line_key = (event_id, book, key, name, description or None, point)
                        earlier = seen.get(line_key)
                        if earlier is not None:  # same natural key twice in one file: the last one wins
                            earlier[0][earlier[1]] = None
                            irregular = True  # the price it replaced is converted (and checked) all the same
                        seen[line_key] = (rows, len(rows))
                        rows.append((name, description or None, point, price))
                        if prices is not None:
                            prices[price]  # converted (or BadInputError) in payload order
                        continue
                    # Player props: player = description, side = name (see the module docstring).
                    slot = slots[name]
                    if description:
                        if slot is None:
                            if not is_player_market:
                                continue
                            if prices is None:
                                irregular = True
                                continue
                            raise _bad(f"cannot tell the side of outcome {name!r} for {description!r} in market "
                                       f"{key} (bookmaker {book}): expected Over/Under/Yes/No")
                        player = description
                    else:
                        if not is_player_market:
                            continue  # a team market in a props file: not a player prop
                        if slot is not None:
                            if prices is None:
                                irregular = True
                                continue
                            raise _bad(f"outcome {name!r} in market {key} (bookmaker {book}) has no player "
                                       f"(no description)")
                        player, slot = name, _YES
                    if point == last_point and player == last_player:  # the other side of the outcome before
                        row = last_row
                    else:
                        row_key = (player, point)
                        row = by_key.get(row_key)
                        if row is None:  # a (player, line) met again later, even in a repeated market, is this row
                            row = by_key[row_key] = [player, point, None, None, None, None]
                            rows.append(row)
                        last_player, last_point, last_row = player, point, row
                    if row[slot] is not None:  # a side given twice: the last one wins
                        irregular = True
                    row[slot] = price
                    if prices is not None:
                        prices[price]  # converted (or BadInputError) in payload order
                n_prices += len(outcomes)
                markets.append((book_base, key, updated, head_text, outcomes, rows))
    return _Walk(markets, n_prices, all_american, irregular)


def price_format_of(n_prices: int, all_american: bool) -> str:
    """The file's price format (module docstring), from `_walk`'s count and verdict."""
    return "american" if n_prices and all_american else "decimal"


def _check_decimal_prices(markets: list[tuple], price_format: str) -> None:
    """BadInputError for the first price that is no decimal price in a decimal file."""
    if price_format != "decimal":
        return
    for book_base, key, _, _, outcomes, _ in markets:
        for outcome in outcomes:
            price = outcome["price"]
            if price <= 1:
                raise _bad(f"price {price!r} of outcome {outcome['name']!r} (market {key}, bookmaker "
                           f"{book_base['bookmaker_key']}) is no decimal price (> 1), and not every price of the "
                           f"file is american (whole, |p| >= 100)")


class _Texts:
    """Converted prices and the staging texts rows are made of, each made once and looked up
    after: a player (name and lookup), a line, a price (its two columns), for one price format
    and endpoint. Kept from file to file (`price_texts`), since the same players, lines and prices
    come back in every snapshot. A number key never stands for 0.0 or -0.0, which are equal keys
    with different texts."""

    def __init__(self, price_format: str, price_columns: tuple[tuple[str, str], ...], point_column: str):
        self.price_format = price_format
        # source price -> (decimal, american); BadInputError when out of range
        self.pairs = pairs = _Made(lambda price: _convert(price, price_format))
        # per (decimal column, american column) of a row: source price -> the text of both columns
        self.prices = tuple(
            _Made(lambda price, d=d, a=a: f',"{d}":{number_text(pairs[price][0])},"{a}":{number_text(pairs[price][1])}')
            for d, a in price_columns)
        self.point_column = point_column
        self.points = _Made(lambda point: f',"{point_column}":{number_text(point)}')  # a nonzero point
        self.strings = _Made(quote)
        self.players = _Made(lambda player: f'{{"player_name":{quote(player)},"player_lookup":'
                                            f'{quote(player_lookup(player))}')

    def point(self, point: float) -> str:
        """`,"column":point` of any point, 0.0 and -0.0 included."""
        return self.points[point] if point else f',"{self.point_column}":{number_text(point)}'

    def size(self) -> int:
        return sum(map(len, (self.pairs, *self.prices, self.points, self.strings, self.players)))


# The texts of each (price format, endpoint), shared by every file (and thread: a dict's get and
# set are atomic, and two threads making the same text make the same one). A set that grew past
# TEXTS_KEPT entries (a file of unusual names) is dropped at the start of the next file.
TEXTS_KEPT = 20_000
_texts: dict[tuple[str, str], _Texts] = {}


def price_texts(ref: ObjectRef, price_format: str) -> _Texts:
    """The converted prices and texts a file's rows are made of (shared by its pieces, streaming.py)."""
    texts = _texts.get((price_format, ref.endpoint))
    if texts is None or texts.size() > TEXTS_KEPT:
        if ref.endpoint == "player-props":
            texts = _Texts(price_format, _PROP_PRICE_COLUMNS, "line")
        else:
            texts = _Texts(price_format, _LINE_PRICE_COLUMNS, "outcome_point")
        _texts[price_format, ref.endpoint] = texts
    return texts


def _head_tail(ref: ObjectRef, price_format: str, generation: int) -> dict:
    """The head columns a file's markets share after their own."""
    return {"price_format": price_format, "source_object": ref.name, "source_generation": int(generation)}


def _prop_lines(markets: list[tuple], tail: str, texts: _Texts) -> tuple[list[str], int]:
    """(staging lines, rows) of props markets: the head text once, then each row's text."""
    players, points, point = texts.players, texts.points, texts.point
    over_text, under_text, yes_text, no_text = texts.prices
    lines = []
    n = 0
    for _, _, _, head_text, _, rows in markets:
        if not rows:
            continue
        n += len(rows)
        row_texts = [
            f"{players[player]}{points[line]}{over_text[over]}{under_text[under]}}}"  # the common row
            if line and over is not None and under is not None and yes is None and no is None else
            "".join((players[player], "" if line is None else point(line),
                     "" if over is None else over_text[over], "" if under is None else under_text[under],
                     "" if yes is None else yes_text[yes], "" if no is None else no_text[no], "}"))
            for player, line, over, under, yes, no in rows]
        lines.append(f"{head_text}{tail}{','.join(row_texts)}]}}")
    return lines, n


def _game_line_lines(markets: list[tuple], tail: str, texts: _Texts) -> tuple[list[str], int]:
    """(staging lines, rows) of game-lines markets: the head text once, then each row's text."""
    strings, point_text, (price_text,) = texts.strings, texts.point, texts.prices
    lines = []
    n = 0
    for _, _, _, head_text, _, rows in markets:
        row_texts = [
            "".join(('{"outcome_name":', strings[name],
                     "" if description is None else ',"outcome_description":' + strings[description],
                     "" if point is None else point_text(point), price_text[price], "}"))
            for name, description, point, price in filter(None, rows)]  # None: replaced by a later one
        if row_texts:
            n += len(row_texts)
            lines.append(f"{head_text}{tail}{','.join(row_texts)}]}}")
    return lines, n


def _staged_lines(ref: ObjectRef, markets: list[tuple], texts: _Texts, generation: int) -> tuple[list[str], int]:
    """The staging lines of a walk's markets and their row count: the text of
    `staging.encode(_grouped(...))`, written straight from the walked values."""
    tail = "," + object_text(_head_tail(ref, texts.price_format, generation))[1:-1] + f',"{MARKET_ROWS_FIELD}":['
    if ref.endpoint == "player-props":
        return _prop_lines(markets, tail, texts)
    return _game_line_lines(markets, tail, texts)


def _grouped(ref: ObjectRef, markets: list[tuple], texts: _Texts, generation: int) -> tuple[list[MarketRows], int]:
    """The same rows as dicts, grouped per market (MarketRows), and their count."""
    tail = _head_tail(ref, texts.price_format, generation)
    pairs = texts.pairs
    props = ref.endpoint == "player-props"
    out: list[MarketRows] = []
    n = 0
    for book_base, key, updated, _, _, rows in markets:
        staged = []
        for row in rows:
            if row is None:  # a game line replaced by a later one
                continue
            if props:
                player, line = row[0], row[1]
                columns = {"player_name": player, "player_lookup": player_lookup(player)}
                if line is not None:
                    columns["line"] = line
                for (decimal_column, american_column), price in zip(_PROP_PRICE_COLUMNS, row[2:]):
                    if price is not None:
                        columns[decimal_column], columns[american_column] = pairs[price]
            else:
                name, description, point, price = row
                columns = {"outcome_name": name}
                if description is not None:
                    columns["outcome_description"] = description
                if point is not None:
                    columns["outcome_point"] = point
                columns["price_decimal"], columns["price_american"] = pairs[price]
            staged.append(columns)
        if staged:
            head = dict(book_base)
            head["market_key"] = key
            head["market_last_update"] = updated
            head.update(tail)
            out.append((head, staged))
            n += len(staged)
    return out, n


def _rows_of(ref: ObjectRef, events: list[dict], wrapper: dict | None, snapshot: tuple, generation: int,
             write, price_format: str | None = None, texts: _Texts | None = None, walked: _Walk | None = None):
    """`write(ref, markets, texts, generation)` of the events' rows, in the one order in which a
    file's rules are checked, whoever writes its rows: every structural error of the file first
    (`_walk`), then a price that is no decimal price in a decimal file, then, in payload order, a
    side that cannot be told or a price out of its column's range. `price_format` and `texts`:
    the file's, when the events are a piece of it; `walked`: `_walk` of the events, if made."""
    if walked is None:
        walked = _walk(ref, events, wrapper, snapshot)
    if price_format is None:
        price_format = price_format_of(walked.n_prices, walked.all_american)
    _check_decimal_prices(walked.markets, price_format)
    if texts is None:
        texts = price_texts(ref, price_format)
    if walked.irregular:
        walked = _walk(ref, events, wrapper, snapshot, texts.pairs)
    try:
        return write(ref, walked.markets, texts, generation)
    except BadInputError:  # a price out of range: the walk names the first one in payload order
        _walk(ref, events, wrapper, snapshot, texts.pairs)
        raise


class StagedText(NamedTuple):
    """One file's staging NDJSON (see staging.py), its row count, and its snapshot time text
    (one per file; None without rows)."""

    ndjson: bytes
    rows: int
    snapshot: str | None


def _check_endpoint(ref: ObjectRef) -> None:
    if ref.endpoint not in ("game-lines", "player-props"):
        raise _bad(f"no table for endpoint {ref.endpoint!r}")


def staged_text(ref: ObjectRef, events: list[dict], wrapper: dict | None, snapshot: tuple, generation: int = 0,
                price_format: str | None = None, texts: _Texts | None = None,
                walked: _Walk | None = None) -> StagedText:
    """The staging NDJSON of validated-shape events (`split_payload`) at their file's snapshot
    (`_snapshot`); for a piece of a file (streaming.py) with the file's `price_format` and `texts`."""
    _check_endpoint(ref)
    lines, n = _rows_of(ref, events, wrapper, snapshot, generation, _staged_lines, price_format, texts, walked)
    if not lines:
        return StagedText(b"", 0, None)
    lines.append("")
    return StagedText("\n".join(lines).encode("utf-8"), n, snapshot[1])


def staged_from_payload(ref: ObjectRef, payload: Any, generation: int = 0,
                        created: datetime | None = None) -> StagedText:
    """The staging NDJSON of an already parsed payload (see `staged_for_object`)."""
    events, wrapper = split_payload(payload)
    return staged_text(ref, events, wrapper, _snapshot(ref, wrapper, created), generation)


def staged_for_object(object_name: str, data: bytes, generation: int = 0,
                      created: datetime | None = None) -> StagedText:
    """The staging NDJSON of one object, exactly `staging.encode(markets_for_object(...))` but
    written straight from the parsed values, without a dict per row; BadInputError if it cannot
    be read."""
    ref = parse_object_name(object_name)
    table_for_endpoint(ref.endpoint)  # KeyError for an endpoint without a table: a programming error
    return staged_from_payload(ref, parse_payload(data), generation, created)


def markets_from_payload(ref: ObjectRef, payload: Any, generation: int = 0,
                         created: datetime | None = None) -> list[MarketRows]:
    """Staged rows of an already parsed payload, grouped per market (see MarketRows)."""
    events, wrapper = split_payload(payload)
    _check_endpoint(ref)
    return _rows_of(ref, events, wrapper, _snapshot(ref, wrapper, created), generation, _grouped)[0]


def markets_for_object(object_name: str, data: bytes, generation: int = 0,
                       created: datetime | None = None) -> list[MarketRows]:
    """Staged rows of one object as dicts, grouped per market; BadInputError if it cannot be read.
    For tests and checks: the holder stages `staged_for_object`, the same rows as text."""
    ref = parse_object_name(object_name)
    table_for_endpoint(ref.endpoint)  # KeyError for an endpoint without a table: a programming error
    return markets_from_payload(ref, parse_payload(data), generation, created)


def flatten(groups: list[MarketRows], spec: TableSpec) -> list[dict]:
    """Full rows (every staged column, head columns first) of grouped market rows."""
    empty = dict.fromkeys(spec.line_columns)
    out = []
    for head, rows in groups:
        for row in rows:
            full = dict(head)
            full.update(empty)
            full.update(row)
            out.append(full)
    return out


def rows_from_payload(ref: ObjectRef, payload: Any, generation: int = 0,
                      created: datetime | None = None) -> list[dict]:
    """Staged rows of an already parsed payload (see `rows_for_object`)."""
    return flatten(markets_from_payload(ref, payload, generation, created), table_for_endpoint(ref.endpoint))


def rows_for_object(object_name: str, data: bytes, generation: int = 0,
                    created: datetime | None = None) -> list[dict]:
    """Staged rows of one object for its endpoint's table; BadInputError if it cannot be read."""
    ref = parse_object_name(object_name)
    table_for_endpoint(ref.endpoint)  # KeyError for an endpoint without a table: a programming error
    return rows_from_payload(ref, parse_payload(data), generation, created)


def natural_key(row: dict, spec: TableSpec) -> tuple:
    """The row's natural key, in `spec.natural_key` order."""
    return tuple(row[c] for c in spec.natural_key)


def outcomes_from_rows(rows: Iterable[dict], endpoint: str) -> Counter:
    """The multiset of outcomes the rows hold, in source format:
    (event id, bookmaker, market, outcome name, description, point, price).

    Game lines give the outcome as stored. Player props unpivot each filled side into
    (..., "Over"|"Under"|"Yes"|"No", player, line, price): the canonical spelling of the side,
    with the player as description (also for first-basket style outcomes that named the player
    in `name`). Prices: the american INT64 when the file was american, else the decimal.
    """
    out: Counter = Counter()
    for row in rows:
        american = row["price_format"] == "american"
        head = (row["game_id"], row["bookmaker_key"], row["market_key"])
        if endpoint == "game-lines":
            price = row["price_american"] if american else row["price_decimal"]
            out[head + (row["outcome_name"], row["outcome_description"], row["outcome_point"], price)] += 1
            continue
        for side in SIDES:
            decimal_col, american_col = _SIDE_COLUMNS[side]
            if row[decimal_col] is None:
                continue
            price = row[american_col] if american else row[decimal_col]
            out[head + (side.capitalize(), row["player_name"], row["line"], price)] += 1
    return out


# ---------------------------------------------------------------------------------------------
# CLI.


def _name_in_path(path: str) -> str | None:
    """The part of a local path from an `odds-api/{endpoint}[-history]/` segment on, if any."""
    posix = Path(path).as_posix()
    start = 0
    while True:
        at = posix.find("odds-api/", start)
        if at < 0:
            return None
        if (at == 0 or posix[at - 1] == "/") and endpoint_of(posix[at:]):
            return posix[at:]
        start = at + 1


def synthesize_object_name(payload: Any, endpoint: str | None, path: str) -> str:
    """An object name for a local file outside the layout.

    Game date: the US/Eastern date of the first event's tip-off (what the scraper files a game
    under). Name time: the wrapper's timestamp when there is one. Long layout when the payload
    is one event with a usable id and two known teams; `-history` when it is wrapped.
    """
    if not endpoint:
        raise ValueError(f"{path}: not under an odds-api/ layout; pass --object-name or --endpoint")
    events, wrapper = split_payload(payload)
    game_date = None
    for event in events:
        commence_at = _timestamp(event.get("commence_time"), "commence_time")[0]
        if commence_at is not None:
            game_date = us_eastern_date(commence_at)
            break
    if game_date is None:
        raise _bad(f"{path}: no event with a commence_time to date the game; pass --object-name")
    stamp_at = _timestamp(wrapper.get("timestamp"), "wrapper timestamp")[0] if wrapper else None
    if stamp_at is not None:
        file_part = f"{stamp_at:%Y%m%d_%H%M%S}-snap-{stamp_at:%H%M}"
    else:
        base = Path(path).name
        file_part = base[:-5] if base.endswith(".json") else base
    directory = f"odds-api/{endpoint}{'-history' if wrapper is not None else ''}/{game_date.isoformat()}"
    if len(events) == 1:
        event = events[0]
        event_id = event.get("id")
        away = teams.abbreviation(event.get("away_team") if isinstance(event.get("away_team"), str) else None)
        home = teams.abbreviation(event.get("home_team") if isinstance(event.get("home_team"), str) else None)
        if isinstance(event_id, str) and _ID_RE.match(event_id) and away and home:
            return f"{directory}/{event_id}-{away}{home}/{file_part}.json"
    return f"{directory}/{file_part}.json"


def cmd_transform(args) -> int:
    """Print the rows each file would stage, as NDJSON (sorted keys), on stdout."""
    out = sys.stdout
    for path in args.files:
        data = Path(path).read_bytes()
        created = datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc)
        payload = parse_payload(data)
        name = args.object_name or _name_in_path(path) or synthesize_object_name(payload, args.endpoint, path)
        ref = parse_object_name(name)
        if args.endpoint and ref.endpoint != args.endpoint:
            raise ValueError(f"--endpoint {args.endpoint} disagrees with the object name {name}")
        rows = rows_from_payload(ref, payload, args.generation, created)
        if rows:
            out.write("\n".join(json.dumps(row, sort_keys=True) for row in rows))
            out.write("\n")
    out.flush()
    return 0
