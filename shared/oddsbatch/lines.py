"""`oddsbatch lines`: a game's closing lines and line moves, from the analyst table functions.

Reads odds_api_closing_lines, odds_api_line_moves and (for --plot) odds_api_lines through the
builders of oddsbatch.sql, against the local stack's emulator when ODDSBATCH_PROJECT is not
set (as reconcile does), else against BigQuery. Prints a readable table, or NDJSON with
--json; --plot FILE.png draws each book's main line over minutes before tip-off, tip-off
marked (matplotlib, imported only then: it is a dev/CLI extra, never in a function bundle).
Bad input ends in one line and exit status 2.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date, datetime
from decimal import Decimal

from . import sql
from .envfile import use_local_stack_if_unconfigured

_KEY = re.compile(r"^[a-z0-9_]{1,64}$")
_GAME = re.compile(r"^[A-Za-z0-9]{1,64}$")

CLOSE_COLUMNS = (("book", 14), ("market", 24), ("participant", 18), ("side", 22), ("open", 15), ("close", 15),
                 ("no-vig", 6), ("min", 4), ("true", 4))
MOVE_COLUMNS = (("min", 4), ("book", 14), ("market", 24), ("participant", 18), ("side", 22), ("from", 15),
                ("to", 15), ("steam", 5))


def parse_arguments(args) -> dict:
    """The validated filters of `oddsbatch lines`; ValueError (exit 2) on bad input."""
    try:
        day = date.fromisoformat(args.date)
    except (TypeError, ValueError):
        raise ValueError(f"--date {args.date!r} is not a date YYYY-MM-DD") from None
    if args.game is not None and not _GAME.match(args.game):
        raise ValueError(f"--game {args.game!r} is not an event id (letters and digits)")
    for flag, value in (("--market", args.market), ("--book", args.book)):
        if value is not None and not _KEY.match(value):
            raise ValueError(f"{flag} {value!r} is not a key (lowercase letters, digits, _)")
    if args.plot is not None and not str(args.plot).lower().endswith(".png"):
        raise ValueError(f"--plot {args.plot!r} must name a .png file")
    return {"date": day, "game_id": args.game, "market_key": args.market, "bookmaker_key": args.book}


def _price(price_american, point, signed: bool = True) -> str:
    if price_american is None:
        return "-"
    price = f"{price_american:+d}"
    return price if point is None else f"{_point(point, signed)} {price}"


def _point(point, signed: bool = True) -> str:
    """A spread with its sign (+3.5), a total or prop line without (220.5)."""
    if point is None:
        return "-"
    text = f"{Decimal(point).normalize():f}"
    return text if text.startswith("-") or not signed else f"+{text}"


def _cell(value, width: int) -> str:
    text = "-" if value is None else str(value)
    return (text[: width - 1] + "~") if len(text) > width else text.ljust(width)


def _row(cells, columns) -> str:
    return "  ".join(_cell(c, w) for c, (_, w) in zip(cells, columns)).rstrip()


def close_cells(r: dict) -> list:
    nv = r.get("close_no_vig_probability")
    signed = "spreads" in r["market_key"]
    return [r["bookmaker_key"], r["market_key"], r.get("participant"), r["side"],
            _price(r.get("open_price_american"), r.get("open_point"), signed),
            _price(r.get("close_price_american"), r.get("close_point"), signed),
            None if nv is None else f"{nv:.3f}", r.get("close_minutes_before_tipoff"),
            "yes" if r.get("is_true_close") else "no"]


def move_cells(r: dict) -> list:
    signed = "spreads" in r["market_key"]
    return [r.get("minutes_before_tipoff"), r["bookmaker_key"], r["market_key"], r.get("participant"), r["side"],
            _price(r.get("from_price_american"), r.get("from_point"), signed),
            _price(r.get("to_price_american"), r.get("to_point"), signed), "STEAM" if r.get("steam") else ""]


def format_table(closes: list[dict], moves: list[dict]) -> str:
    """The closing lines, then the pre-tip moves, as aligned text tables."""
    out = [f"closing lines ({len(closes)}; open/close = point price, no-vig multiplicative, "
           f"min = minutes before tip of the close, true = within {sql.CLOSING_WINDOW_MINUTES} min)"]
    out.append(_row([n for n, _ in CLOSE_COLUMNS], CLOSE_COLUMNS))
    out += [_row(close_cells(r), CLOSE_COLUMNS) for r in closes]
    pre_tip = [m for m in moves if m.get("is_pre_tip")]
    out.append("")
    out.append(f"line moves before tip ({len(pre_tip)}; steam = {sql.STEAM_BOOKS}+ books the same way "
               f"within {sql.STEAM_MINUTES} min)")
    out.append(_row([n for n, _ in MOVE_COLUMNS], MOVE_COLUMNS))
    out += [_row(move_cells(r), MOVE_COLUMNS) for r in pre_tip]
    return "\n".join(out)


def _plain(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def to_ndjson(closes: list[dict], moves: list[dict]) -> str:
    """One JSON object per line: {"kind": "close" | "move", ...the row's columns}."""
    lines = [json.dumps({"kind": kind, **{k: _plain(v) for k, v in r.items()}}, sort_keys=True)
             for kind, rows in (("close", closes), ("move", moves)) for r in rows]
    return "\n".join(lines)


def plot_lines(history: list[dict], path: str) -> int:
    """Each book's main line (point, or implied probability where the market has none) of the
    first side of each market over minutes before tip, tip-off marked; the number of series."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: install the package's plot extra (oddsbatch[plot])") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple, list] = {}
    first_side: dict[tuple, str] = {}
    for r in history:
        market = (r["market_key"], r.get("participant"))
        side = first_side.setdefault(market, r["side"])
        if r["side"] != side:
            continue
        y = float(r["point"]) if r.get("point") is not None else 1 / r["price_decimal"]
        series.setdefault((market, side, r["bookmaker_key"]), []).append((r["minutes_before_tipoff"], y))
    markets = sorted({k[0] for k in series}, key=lambda m: (m[0], m[1] or ""))
    if not markets:
        raise ValueError("nothing to plot: no main lines for these filters")
    fig, axes = plt.subplots(len(markets), 1, figsize=(9, 2.6 * len(markets)), squeeze=False)
    for ax, market in zip(axes[:, 0], markets):
        for (m, side, book), points in sorted(series.items(), key=lambda kv: kv[0][2]):
            if m == market:
                points.sort(key=lambda p: -p[0])
                ax.step([p[0] for p in points], [p[1] for p in points], where="post", marker="o", label=book)
        ax.axvline(0, color="black", linestyle="--", linewidth=1, label="tip-off")
        ax.invert_xaxis()
        side = first_side[market]
        ax.set_title(f"{market[0]}{' ' + market[1] if market[1] else ''}: {side}", fontsize=9)
        ax.set_xlabel("minutes before tip-off")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(series)


def _parameters(filters: dict, **extra):
    from google.cloud import bigquery

    day = filters["date"]
    params = [bigquery.ScalarQueryParameter("start_date", "DATE", day),
              bigquery.ScalarQueryParameter("end_date", "DATE", day)]
    params += [bigquery.ScalarQueryParameter(k, "STRING", filters[k]) for k in ("game_id", "market_key", "bookmaker_key")]
    params += [bigquery.ScalarQueryParameter(k, "INT64", v) for k, v in extra.items()]
    return bigquery.QueryJobConfig(query_parameters=params)


def fetch(filters: dict) -> tuple[list[dict], list[dict], object]:
    """(closing lines, line moves, settings) for the filters, from BigQuery or the emulator."""
    from .clients import bigquery_client
    from .config import Settings

    settings = Settings.from_env("game-lines")
    bq = bigquery_client(settings.project, settings.bigquery_endpoint, settings.bigquery_location)
    closes = bq.query(sql.closing_lines_sql(settings.project, settings.dataset),
                      job_config=_parameters(filters, closing_window_minutes=sql.CLOSING_WINDOW_MINUTES)).result()
    moves = bq.query(sql.line_moves_sql(settings.project, settings.dataset),
                     job_config=_parameters(filters, steam_books=sql.STEAM_BOOKS,
                                            steam_minutes=sql.STEAM_MINUTES)).result()
    return [dict(r) for r in closes], [dict(r) for r in moves], settings


def cmd_lines(args) -> int:
    filters = parse_arguments(args)
    use_local_stack_if_unconfigured(args.state_dir)
    from google.api_core.exceptions import GoogleAPIError

    try:
        closes, moves, settings = fetch(filters)
    except GoogleAPIError as exc:  # a missing dataset or function, an unreachable endpoint: one line
        raise ValueError(f"BigQuery: {str(exc).splitlines()[0]}") from None
    if not closes and not moves:
        print(f"oddsbatch lines: no lines for {filters['date']}"
              + "".join(f" {k}={v}" for k, v in filters.items() if k != "date" and v), file=sys.stderr)
        return 1
    print(to_ndjson(closes, moves) if args.json else format_table(closes, moves))
    if args.plot:
        from .clients import bigquery_client

        bq = bigquery_client(settings.project, settings.bigquery_endpoint, settings.bigquery_location)
        history = [dict(r) for r in bq.query(sql.line_history_sql(settings.project, settings.dataset),
                                             job_config=_parameters(filters)).result()]
        n = plot_lines(history, args.plot)
        print(f"plot: {args.plot} ({n} series)", file=sys.stderr)
    return 0
