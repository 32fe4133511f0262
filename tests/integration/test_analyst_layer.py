"""The analyst layer's table functions on the emulator, against an independent computation.

A hand-built day (one game, three books, five snapshots) holds what the definitions must get
right: an in-game snapshot (to exclude from opens and closes), a book that stops quoting an
hour before tip, a spread that moves across points, a main market with a second point on
offer, alternates, a team total, yes/no props and a side quoted alone, and two books moving
the same spread in the same snapshot (steam). The files go through the stack like the
scraper's; every table function is then queried and compared with what this module computes
from its own model of the quotes, from the definitions (issue 12, ODDS_API.md), without
importing the package's logic: power and Shin are solved here by bisection on the general
formulas, not by the SQL's closed forms.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.cloud import bigquery

from oddsbatch import sql

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration

DAY = "2025-04-17"
GAME = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
HOME, AWAY = "Boston Celtics", "New York Knicks"
TIP = datetime(2025, 4, 17, 23, 30, tzinfo=timezone.utc)
OFFSETS = (180, 60, 30, 10, -20)  # minutes before tip; -20 is in-game
PLAYER = "Jalen Brunson"
STEAM_BOOKS, STEAM_MINUTES, WINDOW = 2, 5, 15


def american_to_decimal(a: int) -> float:
    return 1 + a / 100 if a > 0 else 1 + 100 / abs(a)


@dataclass(frozen=True)
class Quote:
    offset: int
    book: str
    market: str
    participant: str | None
    side: str
    point: Decimal | None
    price: float  # decimal

    @property
    def snapshot(self) -> datetime:
        return TIP - timedelta(minutes=self.offset)


def _model() -> list[Quote]:
    q: list[Quote] = []

    def two(offsets, book, market, participant, sides, point, prices, american=False):
        for off in offsets:
            for (side, pt), price in zip(sides(point), prices):
                q.append(Quote(off, book, market, participant, side,
                               None if pt is None else Decimal(str(pt)),
                               american_to_decimal(price) if american else price))

    h2h = lambda _p: [(HOME, None), (AWAY, None)]  # noqa: E731
    spread = lambda p: [(HOME, p), (AWAY, -p)]  # noqa: E731
    ou = lambda p: [("Over", p), ("Under", p)]  # noqa: E731
    yn = lambda _p: [("Yes", None), ("No", None)]  # noqa: E731
    pre = (180, 60, 30, 10)
    # game lines (a decimal file per snapshot)
    two(pre, "draftkings", "h2h", None, h2h, None, (1.80, 2.10))  # the issue's worked example
    two((180,), "fanduel", "h2h", None, h2h, None, (1.75, 2.15))
    two((60, 30, 10), "fanduel", "h2h", None, h2h, None, (1.70, 2.20))
    two((180, 60), "betmgm", "h2h", None, h2h, None, (1.78, 2.12))  # stops quoting an hour out
    two((-20,), "draftkings", "h2h", None, h2h, None, (1.20, 4.50))  # in-game
    two((180, 60), "draftkings", "spreads", None, spread, -3.5, (1.91, 1.91))
    two((30,), "draftkings", "spreads", None, spread, -4.5, (1.91, 1.91))  # moves across points
    two((10,), "draftkings", "spreads", None, spread, -4.5, (1.87, 1.95))
    two((180, 60), "fanduel", "spreads", None, spread, -3.5, (1.90, 1.92))
    two((30, 10), "fanduel", "spreads", None, spread, -4.5, (1.90, 1.92))  # steam with draftkings
    two((10,), "fanduel", "spreads", None, spread, -5.5, (2.10, 1.75))  # a second point: not main
    two((180, 60), "betmgm", "spreads", None, spread, -3.5, (1.93, 1.89))
    two((-20,), "draftkings", "spreads", None, spread, -10.5, (1.91, 1.91))
    two((180, 60, 30), "draftkings", "totals", None, ou, 220.5, (1.91, 1.91))
    two((10,), "draftkings", "totals", None, ou, 221.5, (1.95, 1.87))
    two(pre, "fanduel", "totals", None, ou, 221.5, (1.90, 1.92))
    two((180, 60), "betmgm", "totals", None, ou, 220.5, (1.95, 1.87))
    two(pre, "draftkings", "alternate_spreads", None, spread, -2.5, (1.70, 2.15))
    two(pre, "draftkings", "alternate_spreads", None, spread, -5.5, (2.20, 1.68))
    two(pre, "draftkings", "team_totals", HOME, ou, 112.5, (1.91, 1.91))
    # player props (an american file per snapshot)
    two(pre, "draftkings", "player_points", PLAYER, ou, 27.5, (-110, -110), american=True)
    two((180,), "fanduel", "player_points", PLAYER, ou, 27.5, (-115, -105), american=True)
    two((60, 30, 10), "fanduel", "player_points", PLAYER, ou, 28.5, (-110, -110), american=True)
    two((180,), "betmgm", "player_points", PLAYER, ou, 26.5, (-105, -115), american=True)
    two((-20,), "draftkings", "player_points", PLAYER, ou, 35.5, (-110, -110), american=True)
    two(pre, "draftkings", "player_points_alternate", PLAYER, ou, 24.5, (-250, 190), american=True)
    two(pre, "draftkings", "player_points_alternate", PLAYER, ou, 30.5, (200, -260), american=True)
    for off in pre:  # an Over-only alternate and a Yes-only double-double: one side quoted
        q.append(Quote(off, "fanduel", "player_points_alternate", PLAYER, "Over", Decimal("32.5"), 3.5))
        q.append(Quote(off, "fanduel", "player_double_double", PLAYER, "Yes", None, 2.6))
    two(pre, "draftkings", "player_double_double", PLAYER, yn, None, (150, -190), american=True)
    return q


def _american(decimal_price: float) -> int:
    return round((decimal_price - 1) * 100) if decimal_price >= 2 else round(-100 / (decimal_price - 1))


def _files(quotes: list[Quote]) -> list[tuple[str, bytes]]:
    """One game-lines file (decimal) and one player-props file (american) per snapshot."""
    files = []
    for off in OFFSETS:
        snap = TIP - timedelta(minutes=off)
        stamp = snap.strftime("%Y%m%d_%H%M%S")
        for endpoint, american in (("game-lines", False), ("player-props", True)):
            books: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
            for x in quotes:
                if x.offset != off or x.market.startswith("player_") != (endpoint == "player-props"):
                    continue
                outcome = {"name": x.side, "price": _american(x.price) if american else x.price}
                if x.point is not None:
                    outcome["point"] = float(x.point)
                if x.participant is not None:
                    outcome["description"] = x.participant
                books[x.book][x.market].append(outcome)
            last = snap.strftime("%Y-%m-%dT%H:%M:%SZ")
            event = {"id": GAME, "sport_key": "basketball_nba", "sport_title": "NBA",
                     "commence_time": TIP.strftime("%Y-%m-%dT%H:%M:%SZ"), "home_team": HOME, "away_team": AWAY,
                     "bookmakers": [{"key": b, "title": b, "last_update": last,
                                     "markets": [{"key": m, "last_update": last, "outcomes": o} for m, o in ms.items()]}
                                    for b, ms in books.items()]}
            name = f"odds-api/{endpoint}/{DAY}/{GAME}-NYKBOS/{stamp}-snap-{snap:%H%M}.json"
            files.append((name, json.dumps(event).encode()))
    return files


# -- the independent computation ------------------------------------------------------------
def line_point(x: Quote) -> Decimal | None:
    return -x.point if "spreads" in x.market and x.side == AWAY else x.point


def main_lines(quotes: list[Quote]) -> set[Quote]:
    groups = defaultdict(lambda: defaultdict(list))
    for x in quotes:
        groups[(x.offset, x.book, x.market, x.participant)][line_point(x)].append(x)
    main = set()
    for by_point in groups.values():
        if list(by_point) == [None]:
            main.update(by_point[None])
            continue
        two_sided = [(abs(a.price - b.price), p) for p, (a, b) in
                     ((p, xs) for p, xs in by_point.items() if len(xs) == 2)]
        if two_sided:
            main.update(by_point[min(two_sided)[1]])
    return main


def bisect(f, lo: float, hi: float) -> float:
    """The root of a decreasing f on [lo, hi]."""
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def no_vig(prices: list[float]) -> dict:
    p = [1 / d for d in prices]
    s, n = sum(p), len(p)
    k = bisect(lambda k: sum(x ** k for x in p) - 1, 0.2, 5.0)

    def shin(z):
        return [(math.sqrt(z * z + 4 * (1 - z) * x * x / s) - z) / (2 * (1 - z)) for x in p]

    z = bisect(lambda z: sum(shin(z)) - 1, 0.0, 0.9)
    return {"margin": s - 1, "multiplicative": [x / s for x in p], "additive": [x - (s - 1) / n for x in p],
            "power": [x ** k for x in p], "shin": shin(z), "k": k, "z": z}


def side_rank(side: str) -> tuple:
    return (0 if side in ("Over", "Yes", HOME) else 1 if side in ("Under", "No", AWAY) else 2, side)


def minutes_before(x: Quote) -> int:
    return (TIP - x.snapshot) // timedelta(minutes=1)


# -- helpers --------------------------------------------------------------------------------
def _query(stack, statement: str, **params) -> list[dict]:
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", Decimal: "NUMERIC", date: "DATE",
             datetime: "TIMESTAMP"}
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(k, kind, v) for k, (kind, v) in
        ((k, v if isinstance(v, tuple) else (kinds[type(v)], v)) for k, v in params.items())])
    return [dict(r) for r in stack.bigquery().query(statement, job_config=config).result()]


def _function(stack, name: str, **args) -> list[dict]:
    statement = sql.table_function_sql(stack.project, stack.dataset, name, tuple(args))
    return [r for r in _query(stack, statement, **args) if r["game_id"] == GAME]


DATES = {"start_date": date.fromisoformat(DAY), "end_date": date.fromisoformat(DAY)}


@pytest.fixture(scope="module")
def day(stack):
    quotes = _model()
    files = _files(quotes)
    upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    return quotes


def test_lines_are_long_and_flag_pre_tip_and_main_lines(stack, day):
    got = _function(stack, "odds_api_lines", **DATES)
    main = main_lines(day)
    expected = {(x.book, x.market, x.participant, x.side, x.point, x.snapshot):
                (x.offset > 0, x in main, minutes_before(x), _american(x.price)) for x in day}
    assert len(got) == len(day)
    for row in got:
        key = (row["bookmaker_key"], row["market_key"], row["participant"], row["side"], row["point"],
               row["snapshot_timestamp"])
        assert (row["is_pre_tip"], row["is_main_line"], row["minutes_before_tipoff"], row["price_american"]) == \
            expected[key], key
        x = next(q for q in day if (q.book, q.market, q.participant, q.side, q.point, q.snapshot) == key)
        assert row["price_decimal"] == pytest.approx(american_to_decimal(_american(x.price))
                                                     if x.market.startswith("player_") else x.price)
        assert row["implied_probability"] == pytest.approx(1 / row["price_decimal"])
    # the three things the fixture was built for, spelled out
    fd10 = {(r["point"], r["is_main_line"]) for r in got if r["bookmaker_key"] == "fanduel"
            and r["market_key"] == "spreads" and r["side"] == HOME and r["minutes_before_tipoff"] == 10}
    assert fd10 == {(Decimal("-4.5"), True), (Decimal("-5.5"), False)}
    assert {r["participant"] for r in got if r["market_key"] == "team_totals"} == {HOME}
    assert not any(r["is_main_line"] for r in got if r["market_key"] == "player_points_alternate"
                   and r["bookmaker_key"] == "fanduel")  # quoted on one side only


def _prices(day, key) -> list[Quote]:
    return sorted((x for x in day if (x.offset, x.book, x.market, x.participant, line_point(x)) == key),
                  key=lambda x: side_rank(x.side))


def _decimal(x: Quote) -> float:
    return american_to_decimal(_american(x.price)) if x.market.startswith("player_") else x.price


def test_market_snapshots_match_every_no_vig_method(stack, day):
    got = _function(stack, "odds_api_market_snapshots", **DATES)
    keys = {(x.offset, x.book, x.market, x.participant, line_point(x)) for x in day}
    assert len(got) == len(keys)
    two_way = 0
    for row in got:
        key = (minutes_before_tipoff_to_offset(row), row["bookmaker_key"], row["market_key"], row["participant"],
               row["point"])
        sides = _prices(day, key)
        assert row["outcomes"] == len(sides) and [s["side"] for s in row["sides"]] == [x.side for x in sides]
        if len(sides) < 2:
            assert row["margin"] is None and row["no_vig_multiplicative_1"] is None
            continue
        two_way += 1
        want = no_vig([_decimal(x) for x in sides])
        assert row["margin"] == pytest.approx(want["margin"], abs=1e-12)
        assert row["power_k"] == pytest.approx(want["k"], abs=1e-9)
        assert row["shin_z"] == pytest.approx(want["z"], abs=1e-9)
        for i in (1, 2):
            for method in ("multiplicative", "additive", "power", "shin"):
                assert row[f"no_vig_{method}_{i}"] == pytest.approx(want[method][i - 1], abs=1e-9), (key, method)
                assert row[f"fair_decimal_{method}_{i}"] == pytest.approx(1 / want[method][i - 1], rel=1e-9)
    assert two_way > 20


def minutes_before_tipoff_to_offset(row) -> int:
    return (TIP - row["snapshot_timestamp"]) // timedelta(minutes=1)


def test_the_issues_known_values_to_four_places(stack, day):
    got = _function(stack, "odds_api_market_snapshots", **DATES)
    pre = [r for r in got if r["is_pre_tip"] and r["bookmaker_key"] == "draftkings"]
    h2h = next(r for r in pre if r["market_key"] == "h2h")
    assert (h2h["price_decimal_1"], h2h["price_decimal_2"]) == (1.80, 2.10)
    four = lambda *xs: tuple(round(x, 4) for x in xs)  # noqa: E731
    assert four(h2h["no_vig_multiplicative_1"], h2h["no_vig_multiplicative_2"]) == (0.5385, 0.4615)
    assert four(h2h["no_vig_additive_1"], h2h["no_vig_additive_2"]) == (0.5397, 0.4603)
    assert four(h2h["no_vig_shin_1"], h2h["no_vig_shin_2"], h2h["shin_z"]) == (0.5397, 0.4603, 0.0318)
    assert four(h2h["no_vig_power_1"], h2h["no_vig_power_2"], h2h["power_k"]) == (0.5403, 0.4597, 1.0474)
    points = next(r for r in pre if r["market_key"] == "player_points")
    assert (points["price_american_1"], points["price_american_2"]) == (-110, -110)
    assert four(points["implied_probability_1"], points["implied_probability_2"], points["margin"]) == \
        (0.5238, 0.5238, 0.0476)
    for method in ("multiplicative", "additive", "power", "shin"):
        assert four(points[f"no_vig_{method}_1"], points[f"no_vig_{method}_2"]) == (0.5, 0.5), method


def expected_closes(day, in_game_too: bool = False) -> dict:
    main = main_lines(day)
    by_side = defaultdict(list)
    for x in day:
        if x in main and (x.offset > 0 or in_game_too) and "alternate" not in x.market:
            by_side[(x.book, x.market, x.participant, x.side)].append(x)
    out = {}
    for key, xs in by_side.items():
        xs.sort(key=lambda x: x.snapshot)
        first, last = xs[0], xs[-1]
        line = [y for y in day if (y.offset, y.book, y.market, y.participant, line_point(y)) ==
                (last.offset, last.book, last.market, last.participant, line_point(last))]
        out[key] = {"open_point": first.point, "open_price_decimal": _decimal(first),
                    "open_snapshot_timestamp": first.snapshot, "close_point": last.point,
                    "close_price_decimal": _decimal(last), "close_snapshot_timestamp": last.snapshot,
                    "close_minutes_before_tipoff": minutes_before(last),
                    "is_true_close": (TIP - last.snapshot) <= timedelta(minutes=WINDOW),
                    # no fair price for a side quoted alone
                    "close_no_vig_probability": (1 / _decimal(last)) / sum(1 / _decimal(y) for y in line)
                    if len(line) >= 2 else None}
    return out


def test_closing_lines_never_see_in_game_odds(stack, day):
    rows = [r for r in _query(stack, sql.closing_lines_sql(stack.project, stack.dataset), **DATES,
                              closing_window_minutes=WINDOW, game_id=GAME, market_key=("STRING", None),
                              bookmaker_key=("STRING", None))]
    want = expected_closes(day)
    assert {(r["bookmaker_key"], r["market_key"], r["participant"], r["side"]) for r in rows} == set(want)
    for r in rows:
        w = want[(r["bookmaker_key"], r["market_key"], r["participant"], r["side"])]
        for column, value in w.items():
            assert r[column] == (pytest.approx(value) if isinstance(value, float) else value), column
        assert r["close_implied_probability"] == pytest.approx(1 / r["close_price_decimal"])
    dk = {(r["market_key"], r["side"]): r for r in rows if r["bookmaker_key"] == "draftkings"}
    assert dk[("spreads", HOME)]["close_point"] == Decimal("-4.5") and dk[("spreads", HOME)]["open_point"] == Decimal("-3.5")
    assert dk[("player_points", "Over")]["close_point"] == Decimal("27.5")  # not the in-game 35.5
    # negative control: the fixture tells a leaky close from a clean one (the in-game rows would win)
    leaky = expected_closes(day, in_game_too=True)
    assert {k for k in want if leaky[k]["close_point"] != want[k]["close_point"]
            or leaky[k]["close_price_decimal"] != want[k]["close_price_decimal"]} >= {
        ("draftkings", "spreads", None, HOME), ("draftkings", "player_points", PLAYER, "Over"),
        ("draftkings", "h2h", None, HOME)}
    mgm = [r for r in rows if r["bookmaker_key"] == "betmgm"]
    assert mgm and not any(r["is_true_close"] for r in mgm)  # stopped quoting an hour out
    # the filters of the builder: one book only
    only = _query(stack, sql.closing_lines_sql(stack.project, stack.dataset), **DATES, closing_window_minutes=WINDOW,
                  game_id=GAME, market_key="spreads", bookmaker_key="fanduel")
    assert {(r["bookmaker_key"], r["market_key"]) for r in only} == {("fanduel", "spreads")}


def test_consensus_across_books(stack, day):
    got = _function(stack, "odds_api_consensus", **DATES)
    main = main_lines(day)
    groups = defaultdict(list)
    for x in day:
        groups[(x.snapshot, x.market, x.participant, x.side)].append(x)
    assert len(got) == len(groups)
    for r in got:
        xs = groups[(r["snapshot_timestamp"], r["market_key"], r["participant"], r["side"])]
        mains = [x for x in xs if x in main]
        assert r["books"] == len(mains)
        points = [x.point for x in mains if x.point is not None]
        assert r["median_point"] == (statistics.median(points) if points else None)
        nv = []
        for x in mains:
            line = [y for y in day if (y.offset, y.book, y.market, y.participant, line_point(y)) ==
                    (x.offset, x.book, x.market, x.participant, line_point(x))]
            if len(line) >= 2:
                nv.append((1 / _decimal(x)) / sum(1 / _decimal(y) for y in line))
        assert r["median_no_vig_probability"] == (pytest.approx(statistics.median(nv)) if nv else None)
        assert (r["min_point"], r["max_point"]) == ((min(points), max(points)) if points else (None, None))
        counts = defaultdict(int)
        for x in mains:
            counts[x.point] += 1
        consensus = min(counts, key=lambda p: (-counts[p], (p is not None, p))) if counts else None
        assert r["consensus_point"] == consensus
        best = min(xs, key=lambda x: (-_decimal(x), x.book))
        assert (r["best_price_decimal"], r["best_price_bookmaker_key"], r["best_price_point"]) == \
            (pytest.approx(_decimal(best)), best.book, best.point)
        at = [x for x in xs if x.point == consensus]
        best_at = min(at, key=lambda x: (-_decimal(x), x.book)) if at else None
        assert r["best_price_at_consensus_bookmaker_key"] == (best_at.book if best_at else None), r
    spread = next(r for r in got if r["market_key"] == "spreads" and r["side"] == HOME
                  and minutes_before_tipoff_to_offset(r) == 10)
    assert spread["median_point"] == Decimal("-4.5")  # per side: never a cancelled 0
    assert (spread["best_price_decimal"], spread["best_price_point"]) == (2.10, Decimal("-5.5"))


def expected_moves(day) -> dict:
    main = main_lines(day)
    by_side = defaultdict(list)
    for x in day:
        if x in main and "alternate" not in x.market:
            by_side[(x.book, x.market, x.participant, x.side)].append(x)
    moves = []
    for xs in by_side.values():
        xs.sort(key=lambda x: x.snapshot)
        for a, b in zip(xs, xs[1:]):
            if a.point != b.point or _decimal(a) != _decimal(b):
                if a.point != b.point:
                    up = 1 if b.point > a.point else -1
                    direction = up if b.side == "Over" else -up
                else:
                    direction = 1 if _decimal(b) < _decimal(a) else -1
                moves.append((a, b, direction))
    out = {}
    for a, b, direction in moves:
        books = {m[1].book for m in moves if (m[1].market, m[1].participant, m[1].side, m[2]) ==
                 (b.market, b.participant, b.side, direction)
                 and abs((m[1].snapshot - b.snapshot).total_seconds()) <= STEAM_MINUTES * 60}
        out[(b.book, b.market, b.participant, b.side, b.snapshot)] = {
            "from_snapshot_timestamp": a.snapshot, "from_point": a.point, "to_point": b.point,
            "from_price_decimal": _decimal(a), "to_price_decimal": _decimal(b), "direction": direction,
            "is_pre_tip": b.offset > 0, "minutes_before_tipoff": minutes_before(b),
            "books_moving": len(books), "steam": len(books) >= STEAM_BOOKS}
    return out


def test_line_moves_and_steam(stack, day):
    got = _query(stack, sql.line_moves_sql(stack.project, stack.dataset), **DATES, steam_books=STEAM_BOOKS,
                 steam_minutes=STEAM_MINUTES, game_id=GAME, market_key=("STRING", None), bookmaker_key=("STRING", None))
    want = expected_moves(day)
    assert {(r["bookmaker_key"], r["market_key"], r["participant"], r["side"], r["to_snapshot_timestamp"])
            for r in got} == set(want)
    for r in got:
        w = want[(r["bookmaker_key"], r["market_key"], r["participant"], r["side"], r["to_snapshot_timestamp"])]
        for column, value in w.items():
            assert r[column] == (pytest.approx(value) if isinstance(value, float) else value), column
    steam = {(r["bookmaker_key"], r["side"]) for r in got if r["steam"]}
    assert steam == {("draftkings", HOME), ("fanduel", HOME), ("draftkings", AWAY), ("fanduel", AWAY)}
    assert all(r["market_key"] == "spreads" and r["minutes_before_tipoff"] == 30 for r in got if r["steam"])
    # negative control: three books needed, no move is steam
    strict = _function(stack, "odds_api_line_moves", **DATES, steam_books=3, steam_minutes=STEAM_MINUTES)
    assert strict and not any(r["steam"] for r in strict)


def test_closing_line_value_of_a_bet(stack, day):
    placed = TIP - timedelta(minutes=120)
    rows = _function(stack, "odds_api_clv", **DATES, closing_window_minutes=WINDOW, bet_game_id=GAME,
                     bet_bookmaker_key="draftkings", bet_market_key="spreads", bet_participant=("STRING", None),
                     bet_side=HOME, bet_point=Decimal("-3.5"), bet_price_decimal=1.95, bet_placed_at=placed)
    close = expected_closes(day)[("draftkings", "spreads", None, HOME)]
    assert len(rows) == 1
    r = rows[0]
    assert r["clv_price"] == pytest.approx(1.95 / close["close_price_decimal"] - 1)
    assert r["clv_no_vig"] == pytest.approx(1.95 * close["close_no_vig_probability"] - 1)
    assert r["clv_points"] == Decimal("1") and not r["is_same_point"] and r["is_bet_pre_tip"]
    assert r["bet_minutes_before_tipoff"] == 120
    # any book, a prop Over: one row per book's close, points CLV = close - bet
    over = _function(stack, "odds_api_clv", **DATES, closing_window_minutes=WINDOW, bet_game_id=GAME,
                     bet_bookmaker_key=("STRING", None), bet_market_key="player_points", bet_participant=PLAYER,
                     bet_side="Over", bet_point=Decimal("27.5"), bet_price_decimal=1.95, bet_placed_at=placed)
    closes = expected_closes(day)
    want = {b: closes[(b, "player_points", PLAYER, "Over")] for b in ("draftkings", "fanduel", "betmgm")}
    assert {r["bookmaker_key"]: r["clv_points"] for r in over} == \
        {b: w["close_point"] - Decimal("27.5") for b, w in want.items()}
    assert {r["bookmaker_key"]: round(r["clv_price"], 12) for r in over} == \
        {b: round(1.95 / w["close_price_decimal"] - 1, 12) for b, w in want.items()}


def test_oddsbatch_lines_prints_the_closes_and_moves_and_plots_them(stack, day, capsys, tmp_path):
    from oddsbatch import cli

    plot = tmp_path / "spreads.png"
    assert cli.main(["lines", "--date", DAY, "--game", GAME, "--market", "spreads", "--json", "--plot", str(plot)]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    closes = {(o["bookmaker_key"], o["side"]): o for o in objs if o["kind"] == "close"}
    want = {(b, s): w for (b, m, _p, s), w in expected_closes(day).items() if m == "spreads"}
    assert set(closes) == set(want)
    assert all(closes[k]["close_point"] == float(w["close_point"]) for k, w in want.items())
    moves = [o for o in objs if o["kind"] == "move"]
    assert len(moves) == sum(1 for k in expected_moves(day) if k[1] == "spreads")
    assert sum(o["steam"] for o in moves) == 4
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # the readable table, one book
    assert cli.main(["lines", "--date", DAY, "--game", GAME, "--book", "betmgm"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("closing lines (") and "fanduel" not in text and "betmgm" in text
    # a date without lines: exit 1, one line
    assert cli.main(["lines", "--date", "2025-04-16", "--game", GAME]) == 1
    assert capsys.readouterr().err.count("\n") == 1
