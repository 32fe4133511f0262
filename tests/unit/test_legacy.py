"""import-legacy without a warehouse: the mapping covers every column our loads stage, the
row accounting adds up, and bad input ends in one line before any client is made.
(The SQL itself runs in tests/integration/test_import_legacy.py and is analyzed by ZetaSQL in
tests/conformance/test_statements.py.)"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from oddsbatch import cli, legacy
from oddsbatch.tables import all_tables

OLD_SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "legacy"


@pytest.mark.parametrize("name", sorted(legacy.SOURCES))
def test_every_staged_column_is_mapped_from_columns_the_old_table_has(name):
    source = legacy.SOURCES[name]
    spec = all_tables()[source.target]
    assert set(source.columns) == set(spec.staged_columns)
    old_columns = {f["name"] for f in json.loads((OLD_SCHEMAS / f"{source.old_table}.json").read_text())}
    text = " ".join([*source.columns.values(), *(c for c, _ in source.refusals), source.newest_first])
    assert set(re.findall(r"\bO\.(\w+)", text)) <= old_columns
    assert len({why for _, why in source.refusals}) == len(source.refusals)


def test_the_accounting_adds_up_and_reads_as_one_line():
    account = legacy.Accounting(dates=2)
    for outcome, reason, n in (("new", None, 8), ("already_present", None, 2), ("duplicate", None, 1),
                               ("refused", "price_not_decimal", 1), ("refused", "point_not_exact", 1)):
        account.add(outcome, reason, n)
    assert account.read == 13
    source = legacy.SOURCES["game-lines"]
    dry = account.line(source, "p.nba_raw.odds_api_game_lines", date(2025, 1, 20), date(2025, 1, 21), apply=False)
    assert dry == ("import-legacy: odds_api_game_lines <- p.nba_raw.odds_api_game_lines 2025-01-20..2025-01-21 "
                   "dates=2 read=13 would_insert=8 already_present=2 duplicate=1 refused=2 "
                   "(point_not_exact=1, price_not_decimal=1) (dry run: nothing written)")
    account.inserted = 8
    applied = account.line(source, "x", date(2025, 1, 20), date(2025, 1, 20), apply=True)
    assert "inserted=8" in applied and "dry run" not in applied and "would_insert" not in applied


@pytest.mark.parametrize("argv, message", [
    (["--from", "2025-13-01", "--to", "2025-01-20"], "--from must be a date YYYY-MM-DD, got '2025-13-01'"),
    (["--to", "2025-01-20"], "--from must be a date YYYY-MM-DD, got None"),
    (["--from", "2025-01-21", "--to", "2025-01-20"], "--to 2025-01-20 is before --from 2025-01-21"),
    (["--from", "2025-01-20", "--to", "2025-01-20", "--table", "props"],
     "--table must be one of game-lines, player-points-props, got 'props'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(["import-legacy", *argv, "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"oddsbatch import-legacy: {message}\n"
