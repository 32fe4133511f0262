"""A realistic synthetic day of Odds API snapshot files, in the scraper's object layout.

For each game and snapshot: one game-lines file (h2h, spreads, totals for every bookmaker,
plus h2h_q1 and alternate spreads/totals at some) and one player-props file (points,
rebounds, assists, threes, points+rebounds+assists, alternate points and rebounds with
several lines per player, and the yes/no player_double_double), for 8 players a team.

Deterministic for a seed: every random draw comes from a `random.Random` seeded with a
string naming what it draws (roster of a team, a game, a snapshot), so changing one game
count does not reshuffle another team's roster.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterator

from .paths import object_name
from .teams import TEAMS
from .transform import us_eastern_utc_offset

BOOKMAKERS: tuple[tuple[str, str], ...] = (
    ("draftkings", "DraftKings"),
    ("fanduel", "FanDuel"),
    ("betmgm", "BetMGM"),
    ("williamhill_us", "Caesars"),
    ("betrivers", "BetRivers"),
    ("espnbet", "ESPN BET"),
    ("bovada", "Bovada"),
)
# Books that post props, and what each one leaves out.
PROP_BOOKS = ("draftkings", "fanduel", "betmgm", "williamhill_us", "betrivers", "bovada")
_PROP_GAPS = {
    "betrivers": {"player_rebounds_alternate", "player_double_double"},
    "bovada": {"player_points_alternate", "player_rebounds_alternate"},
}
_OVER_ONLY_ALTERNATES = {"fanduel"}  # alternate lines posted as Over only
_NO_BOOK_LAST_UPDATE = {"bovada"}  # bookmaker object without last_update (market still has one)
_YES_ONLY_DOUBLE_DOUBLE = {"williamhill_us"}

# Tip-off times, US/Eastern local.
_TIPS_ET = ((19, 0), (19, 0), (19, 30), (19, 30), (20, 0), (20, 0), (20, 30), (21, 0), (21, 30), (22, 0),
            (22, 0), (22, 30))

_FIRST = ("Marcus", "Jalen", "Tyrese", "Luka", "Nikola", "Jaren", "DeShawn", "Malik", "Cameron", "Darius",
          "Andre", "Isaiah", "Kevin", "Bogdan", "Théo", "Dejounte", "Keegan", "Jonas", "Aaron", "Devin",
          "Zion", "Terrence", "Jordan", "Mikal", "Franz", "Alperen", "Scottie", "Evan", "Dyson", "Jabari",
          "Shai", "Dereck", "Kristaps", "Josh", "Trey", "Caleb", "Quentin", "Amen", "Ousmane", "Tari")
_LAST = ("Williams", "Johnson", "Brooks", "Dončević", "Jokanović", "Jackson Jr.", "Carter", "Hayes",
         "Porter", "Murray", "Ivanović", "Green", "Thompson", "Walker", "Okafor", "Bridges", "Holiday",
         "Mitchell", "Šimunić", "Anderson", "Barnes", "Nance", "Coleman", "Reed", "Allen", "Gordon",
         "Ball", "Wagner", "Duren", "Sengün-Ray", "O'Neale", "Smith III", "Maxwell", "Lively", "Daniels")

# Role templates: mean points, rebounds, assists, threes made.
_ROLES = ((27.0, 6.5, 5.5, 2.8), (21.0, 9.5, 3.0, 1.2), (17.5, 4.5, 6.5, 2.2), (13.5, 10.5, 2.2, 0.4),
          (11.5, 3.5, 3.2, 1.9), (9.5, 5.5, 2.0, 1.1), (7.5, 4.0, 1.5, 0.9), (6.0, 2.8, 2.4, 0.7))


# ---------------------------------------------------------------------------------------------
# Prices.


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _price(prob: float, price_format: str, vig: float = 0.045) -> int | float:
    """The quoted price of an outcome with fair probability `prob`, the book's margin added."""
    implied = min(0.985, max(0.012, prob + vig / 2))
    if price_format == "decimal":
        return max(1.01, round(1.0 / implied, 2))
    if implied >= 0.5:
        american = -round(100 * implied / (1 - implied))
    else:
        american = round(100 * (1 - implied) / implied)
    if abs(american) >= 200:
        american = 5 * round(american / 5)
    return max(american, 100) if american > 0 else min(american, -100)


def _half(value: float) -> float:
    """Nearest x.5 line."""
    return math.floor(value) + 0.5


# ---------------------------------------------------------------------------------------------
# The day.


def _roster(seed: int, team: str) -> list[dict]:
    rng = random.Random(f"{seed}|roster|{team}")
    names: list[str] = []
    while len(names) < 8:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        if name not in names:
            names.append(name)
    players = []
    for name, (pts, reb, ast, threes) in zip(names, _ROLES):
        scale = rng.uniform(0.85, 1.15)
        players.append({"name": name, "points": pts * scale, "rebounds": reb * rng.uniform(0.8, 1.2),
                        "assists": ast * rng.uniform(0.8, 1.2), "threes": threes * rng.uniform(0.7, 1.3)})
    return players


def _schedule(day: date, games: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}|schedule|{day.isoformat()}")
    names = rng.sample(sorted(TEAMS), 2 * games)
    offset = us_eastern_utc_offset(datetime.combine(day, time(12)))
    schedule = []
    for g in range(games):
        away, home = names[2 * g], names[2 * g + 1]
        hour, minute = _TIPS_ET[rng.randrange(len(_TIPS_ET))]
        tip = datetime.combine(day, time(hour, minute)) - offset  # local -> UTC
        schedule.append({
            "id": f"{rng.getrandbits(128):032x}",
            "away": away, "home": home,
            "commence": tip.replace(tzinfo=timezone.utc),
            "spread": round(rng.gauss(-2.5, 6.0) * 2) / 2,  # home line: negative = home favoured
            "total": _half(rng.uniform(212, 240)),
            "rosters": {away: _roster(seed, away), home: _roster(seed, home)},
        })
    schedule.sort(key=lambda game: (game["commence"], game["id"]))
    return schedule


def _snapshot_times(game: dict, snapshots: int, seed: int, historical: bool) -> list[datetime]:
    """Spread from ~10 h to ~20 min before tip-off, seconds jittered, distinct, ascending."""
    rng = random.Random(f"{seed}|snapshots|{game['id']}")
    tip = game["commence"]
    first, last = timedelta(hours=10), timedelta(minutes=20)
    if snapshots == 1:
        offsets = [timedelta(hours=2)]
    else:
        step = (first - last) / (snapshots - 1)
        offsets = [first - i * step for i in range(snapshots)]
    jitter = min(90.0, (first - last).total_seconds() / max(1, snapshots - 1) / 3)
    times: list[datetime] = []
    for off in offsets:
        moment = tip - off + timedelta(seconds=rng.uniform(-jitter, jitter))
        if historical:  # requests on the historical 5-minute grid
            moment = moment.replace(second=0, microsecond=0)
            moment -= timedelta(minutes=moment.minute % 5)
            grid = timedelta(minutes=5)
        else:
            moment = moment.replace(microsecond=0)
            grid = timedelta(seconds=1)
        if times and moment <= times[-1]:
            moment = times[-1] + grid
        times.append(moment)
    return times


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _book_header(key: str, title: str, snapshot: datetime, rng: random.Random) -> tuple[dict, str]:
    updated = _ts(snapshot - timedelta(seconds=rng.randint(4, 400)))
    book = {"key": key, "title": title}
    if key not in _NO_BOOK_LAST_UPDATE:
        book["last_update"] = updated
    return book, updated


def _game_lines(game: dict, snapshot: datetime, rng: random.Random, price_format: str) -> list[dict]:
    home, away = game["home"], game["away"]
    bookmakers = []
    for key, title in BOOKMAKERS:
        book, updated = _book_header(key, title, snapshot, rng)
        spread = game["spread"] + rng.choice((-0.5, 0.0, 0.0, 0.5))
        total = game["total"] + rng.choice((-1.0, -0.5, 0.0, 0.0, 0.5, 1.0))
        p_home = _phi(-spread / 12.0)
        lean = rng.uniform(-0.03, 0.03)
        markets = [
            {"key": "h2h", "last_update": updated, "outcomes": [
                {"name": home, "price": _price(p_home, price_format)},
                {"name": away, "price": _price(1 - p_home, price_format)}]},
            {"key": "spreads", "last_update": updated, "outcomes": [
                {"name": home, "price": _price(0.5 + lean, price_format), "point": spread},
                {"name": away, "price": _price(0.5 - lean, price_format), "point": -spread}]},
            {"key": "totals", "last_update": updated, "outcomes": [
                {"name": "Over", "price": _price(0.5 - lean, price_format), "point": total},
                {"name": "Under", "price": _price(0.5 + lean, price_format), "point": total}]},
        ]
        if key in ("draftkings", "fanduel"):
            p_q1 = _phi(-spread / 4.0 / 6.0)
            markets.append({"key": "h2h_q1", "last_update": updated, "outcomes": [
                {"name": home, "price": _price(p_q1, price_format, 0.06)},
                {"name": away, "price": _price(1 - p_q1, price_format, 0.06)}]})
        if key == "draftkings":
            alt_spreads, alt_totals = [], []
            for step in (-6, -3, 3, 6):
                line = spread + step
                p_cover = _phi(step / 12.0)  # a longer handicap covers more often
                alt_spreads += [{"name": home, "price": _price(p_cover, price_format, 0.06), "point": line},
                                {"name": away, "price": _price(1 - p_cover, price_format, 0.06), "point": -line}]
                t = total + 2 * step
                p_over = _phi(-2 * step / 18.0)
                alt_totals += [{"name": "Over", "price": _price(p_over, price_format, 0.06), "point": t},
                               {"name": "Under", "price": _price(1 - p_over, price_format, 0.06), "point": t}]
            markets.append({"key": "alternate_spreads", "last_update": updated, "outcomes": alt_spreads})
            markets.append({"key": "alternate_totals", "last_update": updated, "outcomes": alt_totals})
        book["markets"] = markets
        bookmakers.append(book)
    return bookmakers


def _over_under(player: str, line: float, p_over: float, price_format: str, over_only: bool = False) -> list[dict]:
    out = [{"name": "Over", "description": player, "price": _price(p_over, price_format), "point": line}]
    if not over_only:
        out.append({"name": "Under", "description": player, "price": _price(1 - p_over, price_format), "point": line})
    return out


def _player_props(game: dict, snapshot: datetime, rng: random.Random, price_format: str) -> list[dict]:
    players = game["rosters"][game["away"]] + game["rosters"][game["home"]]
    titles = dict(BOOKMAKERS)
    bookmakers = []
    for key in PROP_BOOKS:
        book, updated = _book_header(key, titles[key], snapshot, rng)
        gaps = _PROP_GAPS.get(key, set())
        markets: dict[str, list[dict]] = {}

        def add(market: str, outcomes: list[dict]) -> None:
            if market not in gaps:
                markets.setdefault(market, []).extend(outcomes)

        for i, p in enumerate(players):
            starter = i % 8 < 5
            if rng.random() < 0.04:  # a book that has not posted this player yet
                continue
            for stat in ("points", "rebounds", "assists", "threes"):
                mean = p[stat] + rng.uniform(-0.4, 0.4)
                if stat == "threes" and mean < 0.8:
                    continue
                line = _half(mean)
                add(f"player_{stat}", _over_under(p["name"], line, 0.5 + rng.uniform(-0.04, 0.04), price_format))
            if starter:
                pra = p["points"] + p["rebounds"] + p["assists"]
                add("player_points_rebounds_assists",
                    _over_under(p["name"], _half(pra + rng.uniform(-0.6, 0.6)), 0.5 + rng.uniform(-0.03, 0.03),
                                price_format))
                sd = max(2.5, 0.3 * p["points"])
                for k in (-2, -1, 1, 2, 3):
                    line = _half(p["points"] + 4 * k)
                    if line < 3:
                        continue
                    add("player_points_alternate",
                        _over_under(p["name"], line, 1 - _phi((line - p["points"]) / sd), price_format,
                                    over_only=key in _OVER_ONLY_ALTERNATES))
                sd = max(1.5, 0.35 * p["rebounds"])
                for k in (-1, 1, 2):
                    line = _half(p["rebounds"] + 2 * k)
                    if line < 1:
                        continue
                    add("player_rebounds_alternate",
                        _over_under(p["name"], line, 1 - _phi((line - p["rebounds"]) / sd), price_format,
                                    over_only=key in _OVER_ONLY_ALTERNATES))
            if p["rebounds"] >= 6 or p["assists"] >= 6:
                p_dd = min(0.85, max(0.05, (p["rebounds"] + p["assists"] - 6) / 10))
                outcomes = [{"name": "Yes", "description": p["name"], "price": _price(p_dd, price_format, 0.08)}]
                if key not in _YES_ONLY_DOUBLE_DOUBLE:
                    outcomes.append({"name": "No", "description": p["name"],
                                     "price": _price(1 - p_dd, price_format, 0.08)})
                add("player_double_double", outcomes)
        book["markets"] = [{"key": m, "last_update": updated, "outcomes": o} for m, o in markets.items()]
        bookmakers.append(book)
    return bookmakers


def _event(game: dict, bookmakers: list[dict]) -> dict:
    return {
        "id": game["id"],
        "sport_key": "basketball_nba",
        "sport_title": "NBA",
        "commence_time": _ts(game["commence"]),
        "home_team": game["home"],
        "away_team": game["away"],
        "bookmakers": bookmakers,
    }


def _abbr(team: str) -> str:
    return TEAMS[team]


def synthesize_day(day: date, games: int, snapshots: int, seed: int, price_format: str = "american",
                   historical: bool = False) -> Iterator[tuple[str, bytes]]:
    """(object name, payload bytes) of `games` x `snapshots` x 2 endpoints, in snapshot order."""
    if not 1 <= games <= len(TEAMS) // 2:
        raise ValueError(f"games must be between 1 and {len(TEAMS) // 2}, got {games}")
    if snapshots < 1:
        raise ValueError(f"snapshots must be >= 1, got {snapshots}")
    if price_format not in ("american", "decimal"):
        raise ValueError(f"price_format must be american or decimal, got {price_format!r}")
    files = []
    for game in _schedule(day, games, seed):
        for snapshot in _snapshot_times(game, snapshots, seed, historical):
            files.append((snapshot, game))
    files.sort(key=lambda item: (item[0], item[1]["id"]))
    for snapshot, game in files:
        rng = random.Random(f"{seed}|{price_format}|{game['id']}|{snapshot.isoformat()}")
        for endpoint in ("game-lines", "player-props"):
            if endpoint == "game-lines":
                event = _event(game, _game_lines(game, snapshot, rng, price_format))
            else:
                event = _event(game, _player_props(game, snapshot, rng, price_format))
            payload: dict = event
            if historical:
                # The latest 5-minute snapshot at or before the requested time.
                taken = snapshot - timedelta(minutes=5) + timedelta(seconds=rng.randint(20, 59))
                payload = {
                    "timestamp": _ts(taken),
                    "previous_timestamp": _ts(taken - timedelta(minutes=5, seconds=rng.randint(-3, 3))),
                    "next_timestamp": _ts(taken + timedelta(minutes=5, seconds=rng.randint(-3, 3))),
                    "data": event,
                }
            name = object_name(endpoint, day, game["id"], _abbr(game["away"]), _abbr(game["home"]), snapshot,
                               historical=historical)
            yield name, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def cmd_synth(args) -> int:
    """Write a synthetic day under args.out (path = object name); print one summary line."""
    day = date.fromisoformat(args.date)
    out = Path(args.out)
    files = total = 0
    per_endpoint: dict[str, int] = {}
    for name, data in synthesize_day(day, args.games, args.snapshots, args.seed,
                                     price_format=args.price_format, historical=args.historical):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files += 1
        total += len(data)
        endpoint = name.split("/")[1]
        per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + 1
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(per_endpoint.items()))
    print(f"synth: wrote {files} files ({total} bytes) under {out} ({detail})")
    return 0


def synthesize_large_file(day: date, target_bytes: int, seed: int = 7) -> tuple[str, bytes]:
    """(object name, payload) of one valid game-lines snapshot of about `target_bytes`: one event
    whose bookmakers are the synthetic day's, repeated under new keys (book_00001, ...) until the
    payload is that large. A 30 MB one has ~53,000 bookmakers, like the file of issue 19."""
    name, data = next(synthesize_day(day, games=1, snapshots=1, seed=seed))
    event = json.loads(data)
    books = event["bookmakers"]
    per_book = len(json.dumps(books, ensure_ascii=False, separators=(",", ":")).encode()) / len(books)
    count = max(1, int((target_bytes - len(data)) / (per_book + 12)) + len(books))
    event["bookmakers"] = [dict(books[i % len(books)], key=f"book_{i:05d}") for i in range(count)]
    return name, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
