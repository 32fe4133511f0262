"""`oddsbatch lines`: argument errors, table and NDJSON formatting, the lazy plot (no stack)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from oddsbatch import cli, lines

TIP = datetime(2025, 4, 17, 23, 30, tzinfo=timezone.utc)


def _args(**kw) -> argparse.Namespace:
    base = {"date": "2025-04-17", "game": None, "market": None, "book": None, "json": False, "plot": None,
            "state_dir": "/nonexistent"}
    return argparse.Namespace(**{**base, **kw})


def close(**kw) -> dict:
    row = {"bookmaker_key": "draftkings", "market_key": "spreads", "participant": None, "side": "Boston Celtics",
           "open_point": Decimal("-3.5"), "open_price_american": -110, "close_point": Decimal("-4.5"),
           "close_price_american": -115, "close_no_vig_probability": 0.51234, "close_minutes_before_tipoff": 10,
           "is_true_close": True, "close_snapshot_timestamp": TIP, "game_date": date(2025, 4, 17)}
    return {**row, **kw}


def move(**kw) -> dict:
    row = {"minutes_before_tipoff": 30, "bookmaker_key": "fanduel", "market_key": "spreads", "participant": None,
           "side": "Boston Celtics", "from_point": Decimal("-3.5"), "from_price_american": -110,
           "to_point": Decimal("-4.5"), "to_price_american": -110, "steam": True, "is_pre_tip": True}
    return {**row, **kw}


def test_filters_are_parsed():
    assert lines.parse_arguments(_args(game="0a1b2c", market="player_points", book="draftkings")) == {
        "date": date(2025, 4, 17), "game_id": "0a1b2c", "market_key": "player_points", "bookmaker_key": "draftkings"}


@pytest.mark.parametrize("override, message", [
    ({"date": "2025-13-01"}, "--date '2025-13-01' is not a date"),
    ({"date": "yesterday"}, "is not a date YYYY-MM-DD"),
    ({"market": "Spreads; DROP"}, "--market 'Spreads; DROP' is not a key"),
    ({"book": "draft kings"}, "--book 'draft kings' is not a key"),
    ({"game": "abc-123"}, "--game 'abc-123' is not an event id"),
    ({"plot": "moves.pdf"}, "--plot 'moves.pdf' must name a .png file"),
])
def test_bad_input_is_a_value_error(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        lines.parse_arguments(_args(**override))


def test_good_input_is_not_an_error():  # negative control of the one above
    lines.parse_arguments(_args(market="h2h", book="betmgm", game="ABC123", plot="out.PNG"))


@pytest.mark.parametrize("argv", [["lines", "--date", "2025-02-30"], ["lines", "--date", "2025-04-17", "--market", "A B"]])
def test_the_command_exits_2_with_one_line(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("oddsbatch lines: ") and "Traceback" not in err


def test_points_and_prices_read_like_a_sportsbook():
    assert lines._point(Decimal("-4.50")) == "-4.5" and lines._point(Decimal("3.5")) == "+3.5"
    assert lines._point(Decimal("220.50"), signed=False) == "220.5" and lines._point(None) == "-"
    assert lines._price(-110, Decimal("220.5"), signed=False) == "220.5 -110"
    assert lines._price(-110, Decimal("-4.5")) == "-4.5 -110"
    assert lines._price(150, None) == "+150" and lines._price(None, None) == "-"


def test_the_table_lists_closes_then_pre_tip_moves():
    text = lines.format_table([close(), close(bookmaker_key="betmgm", is_true_close=False, close_no_vig_probability=None)],
                              [move(), move(bookmaker_key="betmgm", is_pre_tip=False, steam=False)])
    out = text.splitlines()
    assert out[0].startswith("closing lines (2;") and "within 15 min" in out[0]
    assert out[1].split() == ["book", "market", "participant", "side", "open", "close", "no-vig", "min", "true"]
    assert out[2].split() == ["draftkings", "spreads", "-", "Boston", "Celtics", "-3.5", "-110", "-4.5", "-115",
                              "0.512", "10", "yes"]
    assert out[3].split()[-3:] == ["-", "10", "no"]
    totals = lines.format_table([close(market_key="totals", side="Over", open_point=Decimal("220.5"),
                                       close_point=Decimal("221"))], []).splitlines()[2]
    assert "220.5 -110" in totals and "221 -115" in totals and "+220.5" not in totals
    assert out[5].startswith("line moves before tip (1;")  # the in-game move is left out
    assert out[7].split() == ["30", "fanduel", "spreads", "-", "Boston", "Celtics", "-3.5", "-110", "-4.5", "-110",
                              "STEAM"]
    assert len(out) == 8
    # columns line up: every cell starts where its header does
    header, row = out[1], out[2]
    assert header.index("open") == row.index("-3.5 -110")


def test_long_cells_are_cut_not_shifting_columns():
    row = lines._row(["a" * 40, "b"], (("x", 10), ("y", 3)))
    assert row == "a" * 9 + "~  b"


def test_ndjson_is_one_plain_object_per_row():
    text = lines.to_ndjson([close()], [move()])
    objs = [json.loads(line) for line in text.splitlines()]
    assert [o["kind"] for o in objs] == ["close", "move"]
    assert objs[0]["close_point"] == -4.5 and objs[0]["close_snapshot_timestamp"] == "2025-04-17T23:30:00+00:00"
    assert objs[0]["game_date"] == "2025-04-17" and objs[1]["steam"] is True


def test_plot_draws_a_png(tmp_path):
    history = [{"market_key": "spreads", "participant": None, "side": "Boston Celtics", "bookmaker_key": b,
                "point": Decimal(p), "price_decimal": 1.91, "minutes_before_tipoff": m}
               for b in ("draftkings", "fanduel") for m, p in ((180, "-3.5"), (30, "-4.5"), (-20, "-10.5"))]
    history += [{"market_key": "spreads", "participant": None, "side": "New York Knicks", "bookmaker_key": "fanduel",
                 "point": Decimal("3.5"), "price_decimal": 1.91, "minutes_before_tipoff": 180}]
    history += [{"market_key": "h2h", "participant": None, "side": "Boston Celtics", "bookmaker_key": "draftkings",
                 "point": None, "price_decimal": 1.8, "minutes_before_tipoff": 60}]
    path = tmp_path / "moves.png"
    assert lines.plot_lines(history, str(path)) == 3  # two spread books + one h2h book; the second side is left out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        lines.plot_lines([], str(tmp_path / "empty.png"))


def test_matplotlib_is_imported_only_by_the_plot():
    code = "import sys, oddsbatch.lines, oddsbatch.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_function_bundle_requires_matplotlib():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for req in (root / "functions").glob("*/requirements.txt"):
        assert "matplotlib" not in req.read_text().lower(), req
    assert "matplotlib==" in (root / "requirements-dev.txt").read_text()
