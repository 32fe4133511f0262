"""Odds API snapshot files -> staged rows (one dict per row, exactly `TableSpec.staged_columns`).

Pure: no Google imports, no I/O except in `cmd_transform`. One `json.loads` per file.

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
from typing import Any, Iterable

from . import teams
from .errors import BadInputError
from .paths import ObjectRef, endpoint_of, parse_object_name
from .staging import MarketRows, StagedRow, number_text, object_text, quote
from .tables import TableSpec, table_for_endpoint

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


def _markets(ref: ObjectRef, events: list[dict], wrapper: dict | None,
             snapshot: tuple) -> tuple[list[tuple[dict, list[tuple], str]], int, bool]:
    """Validate the events once: ([(market base row, [(name, description, point, price)], head
    text)], how many prices, whether every price reads as american)."""
    snap_at, snap_text, snap_source = snapshot
    previous = _timestamp(wrapper.get("previous_timestamp"), "wrapper previous_timestamp")[1] if wrapper else None
    following = _timestamp(wrapper.get("next_timestamp"), "wrapper next_timestamp")[1] if wrapper else None
    game_date = format_date(ref.game_date)
    name_event = ref.event_id.lower() if ref.event_id else None
    markets: list[tuple[dict, list[tuple], str]] = []
    exact_points: set[float] = set()  # float points _exact_point accepted (a point repeats across books)
    n_prices = 0
    all_american = True
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
        for bookmaker in _required_list(event, "bookmakers", f"bookmakers of event {event_id}"):
            if not isinstance(bookmaker, dict):
                raise _bad(f"wrong shape: a bookmaker of event {event_id} is a JSON {_type_name(bookmaker)}")
            book = _required_str(bookmaker, "key", f"bookmaker key in event {event_id}")
            where = f"event {event_id} bookmaker {book}"
            book_base = dict(event_base)
            book_base["bookmaker_key"] = book
            book_base["bookmaker_title"] = _optional_str(bookmaker, "title", f"{where} title")
            book_base["bookmaker_last_update"] = _timestamp(bookmaker.get("last_update"), f"{where} last_update")[1]
            book_text = object_text(book_base)[:-1]  # the staging text of every head of this bookmaker
            for market in _required_list(bookmaker, "markets", f"markets of {where}"):
                if not isinstance(market, dict):
                    raise _bad(f"wrong shape: a market of {where} is a JSON {_type_name(market)}")
                key = _required_str(market, "key", f"market key in {where}")
                mwhere = f"{where} market {key}"
                base = dict(book_base)
                base["market_key"] = key
                updated = base["market_last_update"] = _timestamp(market.get("last_update"), f"{mwhere} last_update")[1]
                head_text = (f'{book_text},"market_key":{quote(key)},'
                             f'"market_last_update":{"null" if updated is None else quote(updated)}')
                outcomes = []
                for outcome in _required_list(market, "outcomes", f"outcomes of {mwhere}"):
                    if type(outcome) is not dict:
                        raise _bad(f"wrong shape: an outcome of {mwhere} is a JSON {_type_name(outcome)}")
                    name = outcome.get("name")
                    price = outcome.get("price")
                    point = outcome.get("point")
                    description = outcome.get("description")
                    if type(name) is not str or not name:
                        name = _required_str(outcome, "name", f"outcome name in {mwhere}")  # raises
                    kind = type(price)
                    if kind is int:
                        if all_american and -100 < price < 100:
                            all_american = False
                    elif kind is float and math.isfinite(price):
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
                    outcomes.append((name, description or None, point, price))
                n_prices += len(outcomes)
                markets.append((base, outcomes, head_text))
    return markets, n_prices, all_american


def price_format_of(n_prices: int, all_american: bool) -> str:
    """The file's price format (module docstring), from `_markets`' count and verdict."""
    return "american" if n_prices and all_american else "decimal"


def _heads(ref: ObjectRef, markets: list[tuple[dict, list[tuple], str]], price_format: str,
           generation: int) -> list[tuple[dict, list[tuple]]]:
    """[(market head, outcomes)]: the base rows with the file's columns added; BadInputError for a
    price that is no decimal price in a decimal file."""
    tail = {"price_format": price_format, "source_object": ref.name, "source_generation": int(generation)}
    tail_text = "," + object_text(tail)[1:]
    heads = []
    for base, outcomes, head_text in markets:
        base.update(tail)
        head = StagedRow(base)
        head.json = head_text + tail_text
        heads.append((head, outcomes))
        if price_format == "decimal":
            for name, _, _, price in outcomes:
                if price <= 1:
                    raise _bad(f"price {price!r} of outcome {name!r} (market {base['market_key']}, bookmaker "
                               f"{base['bookmaker_key']}) is no decimal price (> 1), and not every price of the "
                               f"file is american (whole, |p| >= 100)")
    return heads




class _Texts:
    """The staging texts a file's rows are made of, each written once per file: an item that
    repeats (a name, a line, a price) is looked up, not written again."""

    def __init__(self, price_format: str, price_columns: tuple[tuple[str, str], ...]):
        self.price_format = price_format
        self.price_columns = price_columns  # (decimal column, american column) of each price a row holds
        # source price -> ((decimal, american), the text of its two columns for each of price_columns)
        self.prices: dict = {}
        self.strings: dict[str, str] = {}
        self.numbers: dict[tuple[str, float], str] = {}

    def price(self, price) -> tuple:
        """((decimal, american), *texts) of a source price; BadInputError when out of range."""
        found = self.prices.get(price)
        if found is None:
            pair = _convert(price, self.price_format)
            decimal, american = number_text(pair[0]), number_text(pair[1])
            found = self.prices[price] = (pair, *(f',"{d}":{decimal},"{a}":{american}' for d, a in self.price_columns))
        return found

    def string(self, value: str) -> str:
        text = self.strings.get(value)
        if text is None:
            text = self.strings[value] = quote(value)
        return text

    def number(self, column: str, value: float) -> str:
        """`,"column":value`."""
        text = self.numbers.get((column, value))
        if text is None:
            text = f',"{column}":{number_text(value)}'
            if value != 0:  # 0.0 and -0.0 are equal keys but different texts
                self.numbers[column, value] = text
        return text


_LINE_PRICE_COLUMNS = (("price_decimal", "price_american"),)


def _game_line_markets(markets: list[tuple[dict, list[tuple]]], price_format: str,
                       texts: _Texts | None = None) -> list[MarketRows]:
    groups: list[tuple[dict, list]] = []
    seen: dict[tuple, tuple[list, int]] = {}  # natural key -> (rows list, index) of its row
    texts = texts or _Texts(price_format, _LINE_PRICE_COLUMNS)
    prices = texts.prices
    for head, outcomes in markets:
        prefix = (head["game_id"], head["bookmaker_key"], head["market_key"])
        rows: list = []
        for outcome in outcomes:
            key = prefix + outcome[:3]  # (name, description, point)
            earlier = seen.get(key)
            if earlier is not None:  # same natural key twice in one file: the last one wins
                earlier[0][earlier[1]] = None
            seen[key] = (rows, len(rows))
            rows.append((outcome, prices.get(outcome[3]) or texts.price(outcome[3])))
        groups.append((head, rows))
    string, number = texts.string, texts.number
    out = []
    for head, rows in groups:
        staged = []
        for item in rows:
            if item is None:  # superseded
                continue
            (name, description, point, _), (pair, price_text) = item
            columns = {"outcome_name": name}
            text = '{"outcome_name":' + string(name)
            if description is not None:
                columns["outcome_description"] = description
                text += ',"outcome_description":' + string(description)
            if point is not None:
                columns["outcome_point"] = point
                text += number("outcome_point", point)
            columns["price_decimal"], columns["price_american"] = pair
            row = StagedRow(columns)
            row.json = text + price_text + "}"
            staged.append(row)
        if staged:
            out.append((head, staged))
    return out


# A pivoted player-props row while the file is read: [player, line, over, under, yes, no], each
# side the `_Texts.price` of its price, or None.
_SIDE_SLOT = {s: i for i, s in enumerate(SIDES, 2)}
_SIDE_COLUMNS = {s: (f"{s}_price_decimal", f"{s}_price_american") for s in SIDES}
_YES = _SIDE_SLOT["yes"]
_PROP_PRICE_COLUMNS = tuple(_SIDE_COLUMNS.values())


def _player_prop_markets(markets: list[tuple[dict, list[tuple]]], price_format: str,
                         texts: _Texts | None = None) -> list[MarketRows]:
    groups: list[tuple[dict, list]] = []
    by_market: dict[tuple, dict] = {}  # (event, bookmaker, market) -> {(player, line): pivoted row}
    texts = texts or _Texts(price_format, _PROP_PRICE_COLUMNS)
    prices = texts.prices
    slots: dict = {}  # outcome name -> slot of its side, or None
    for head, outcomes in markets:
        market = head["market_key"]
        is_player_market = market.startswith("player_")
        prefix = (head["game_id"], head["bookmaker_key"], market)
        by_key = by_market.get(prefix)
        if by_key is None:
            by_key = by_market[prefix] = {}
        rows: list[list] = []
        for name, description, point, price in outcomes:
            slot = slots.get(name, 0)
            if slot == 0:
                slot = slots[name] = _SIDE_SLOT.get(name.strip().lower())
            if description is not None:
                if slot is None:
                    if not is_player_market:
                        continue
                    raise _bad(f"cannot tell the side of outcome {name!r} for {description!r} in market {market} "
                               f"(bookmaker {head['bookmaker_key']}): expected Over/Under/Yes/No")
                player = description
            else:
                if not is_player_market:
                    continue  # a team market in a props file: not a player prop
                if slot is not None:
                    raise _bad(f"outcome {name!r} in market {market} (bookmaker {head['bookmaker_key']}) "
                               f"has no player (no description)")
                player, slot = name, _YES
            key = (player, point)
            row = by_key.get(key)
            if row is None:  # a (player, line) met again later, even in a repeated market, is this row
                row = by_key[key] = [player, point, None, None, None, None]
                rows.append(row)
            row[slot] = prices.get(price) or texts.price(price)  # a side given twice: the last one wins
        if rows:
            groups.append((head, rows))
    return _staged_player_prop_rows(groups, texts)


def _staged_player_prop_rows(groups: list[tuple[dict, list[list]]], texts: _Texts) -> list[MarketRows]:
    """The pivoted rows as staged rows (each with its staging text)."""
    string, number = texts.string, texts.number
    numbers = texts.numbers
    players: dict[str, tuple[str, str]] = {}  # player -> (lookup, text of both columns)
    out = []
    for head, rows in groups:
        staged = []
        for player, point, over, under, yes, no in rows:
            known = players.get(player)
            if known is None:
                lookup = player_lookup(player)
                known = players[player] = (lookup, f'{{"player_name":{string(player)},"player_lookup":{string(lookup)}')
            if point is not None and over and under and not yes and not no:  # the common row: one literal
                line_text = numbers.get(("line", point)) or number("line", point)
                (over_decimal, over_american), (under_decimal, under_american) = over[0], under[0]
                row = StagedRow({"player_name": player, "player_lookup": known[0], "line": point,
                                 "over_price_decimal": over_decimal, "over_price_american": over_american,
                                 "under_price_decimal": under_decimal, "under_price_american": under_american})
                row.json = f"{known[1]}{line_text}{over[1]}{under[2]}}}"
                staged.append(row)
                continue
            columns = {"player_name": player, "player_lookup": known[0]}
            text = known[1]
            if point is not None:
                columns["line"] = point
                text += number("line", point)
            if over:
                columns["over_price_decimal"], columns["over_price_american"] = over[0]
                text += over[1]
            if under:
                columns["under_price_decimal"], columns["under_price_american"] = under[0]
                text += under[2]
            if yes:
                columns["yes_price_decimal"], columns["yes_price_american"] = yes[0]
                text += yes[3]
            if no:
                columns["no_price_decimal"], columns["no_price_american"] = no[0]
                text += no[4]
            row = StagedRow(columns)
            row.json = text + "}"
            staged.append(row)
        out.append((head, staged))
    return out


def markets_from_payload(ref: ObjectRef, payload: Any, generation: int = 0,
                         created: datetime | None = None) -> list[MarketRows]:
    """Staged rows of an already parsed payload, grouped per market (see MarketRows)."""
    events, wrapper = split_payload(payload)
    snapshot = _snapshot(ref, wrapper, created)
    markets, n_prices, all_american = _markets(ref, events, wrapper, snapshot)
    price_format = price_format_of(n_prices, all_american)
    return pivot(ref, _heads(ref, markets, price_format, generation), price_format)


def price_texts(ref: ObjectRef, price_format: str) -> _Texts:
    """The texts `pivot` writes rows from, to share between the pieces of one file."""
    return _Texts(price_format, _PROP_PRICE_COLUMNS if ref.endpoint == "player-props" else _LINE_PRICE_COLUMNS)


def pivot(ref: ObjectRef, heads: list[tuple[dict, list[tuple]]], price_format: str,
          texts: _Texts | None = None) -> list[MarketRows]:
    """The staged rows of validated markets (`_heads`), grouped per market."""
    if ref.endpoint == "game-lines":
        return _game_line_markets(heads, price_format, texts)
    if ref.endpoint == "player-props":
        return _player_prop_markets(heads, price_format, texts)
    raise _bad(f"no table for endpoint {ref.endpoint!r}")


def markets_for_object(object_name: str, data: bytes, generation: int = 0,
                       created: datetime | None = None) -> list[MarketRows]:
    """Staged rows of one object, grouped per market; BadInputError if it cannot be read."""
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
