"""`make demo`: a real-shaped day through the whole local stack, counted from the emulators.

Brings the stack up, synthesizes 7 games x 2 endpoints x 3 snapshots, uploads them all at
once, waits until no batch runs or is pending, then counts rows by querying the BigQuery
emulator and MERGEs from the MERGE jobs it actually ran. Always brings the stack down.
The counts line, exactly:
demo: game_lines_rows=<int> player_props_rows=<int> merges=<int> files=<int> quarantined=<int> seconds=<float>
then, after it, the closing lines of one game's game-line markets (book, market, side, open,
close, no-vig) from the odds_api_closing_lines table function, and how to see the rest; last,
what `oddsbatch status` said once the sweep had run after the ingest (its last run per
endpoint, pending work, locks): the stack is down when the demo ends, so the demo keeps it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import clients
from ..config import ENDPOINT_TABLES
from ..sql import CLOSING_WINDOW_MINUTES, closing_lines_sql, count_rows_sql, table_path
from .stack import load_env

DEMO_DATE = "2025-01-21"


def _oddsbatch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "oddsbatch.cli", *args], check=True)


# The demo's sweep timer: short, so a sweep runs once the ingest is done (the deployed default is 15 min).
SWEEP_SECONDS = 2.0


def status_after_a_sweep(env: dict[str, str], state_dir: Path, timeout: float = 60.0) -> str:
    """`oddsbatch status` once a sweep started after the ingest has finished on both functions."""
    from .stack import sweep_timer_status

    before = sweep_timer_status(env).get("sweeps", 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        timer = sweep_timer_status(env)
        if timer.get("sweeps", 0) >= before + 2:  # the one running at `before` may predate the ingest's end
            break
        time.sleep(0.5)
    shell = {k: v for k, v in os.environ.items() if not k.startswith("ODDSBATCH_")
             and k not in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")}  # the local stack, never a named project
    done = subprocess.run([sys.executable, "-m", "oddsbatch.cli", "status", "--state-dir", str(state_dir)],
                          capture_output=True, text=True, env=shell, timeout=120)
    return done.stdout if done.returncode == 0 else f"status failed: {done.stderr.strip()}\n"


def count_results(env: dict[str, str], game_date: str, since_jobs: set[str] | None = None) -> dict[str, int]:
    """Rows per table (queried), MERGE jobs run, quarantined objects: from the emulators."""
    from google.cloud import bigquery

    os.environ.update({k: env[k] for k in ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST") if k in env})
    clients.reset()
    project, dataset = env["ODDSBATCH_PROJECT"], env["ODDSBATCH_DATASET"]
    bq = clients.bigquery_client(project, env["ODDSBATCH_BIGQUERY_ENDPOINT"])
    params = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", game_date)])
    counts = {}
    for endpoint, table in ENDPOINT_TABLES.items():
        rows = bq.query(count_rows_sql(table_path(project, dataset, table)), job_config=params).result()
        counts[f"{endpoint.replace('-', '_')}_rows"] = next(iter(rows))["n"]
    merges = [j for j in bq.list_jobs(all_users=True)
              if getattr(j, "statement_type", None) == "MERGE" and j.state == "DONE" and not j.error_result
              and (since_jobs is None or j.job_id not in since_jobs)]
    counts["merges"] = len(merges)
    storage = clients.storage_client(project)
    counts["quarantined"] = sum(1 for _ in storage.list_blobs(env["ODDSBATCH_BUCKET"], prefix="quarantine/"))
    return counts


def closing_lines_of_one_game(env: dict[str, str], game_date: str) -> list[dict]:
    """The closing lines of the date's first game (by id), from odds_api_closing_lines."""
    from google.cloud import bigquery

    project, dataset = env["ODDSBATCH_PROJECT"], env["ODDSBATCH_DATASET"]
    bq = clients.bigquery_client(project, env["ODDSBATCH_BIGQUERY_ENDPOINT"])
    params = [bigquery.ScalarQueryParameter("start_date", "DATE", game_date),
              bigquery.ScalarQueryParameter("end_date", "DATE", game_date),
              bigquery.ScalarQueryParameter("closing_window_minutes", "INT64", CLOSING_WINDOW_MINUTES)]
    params += [bigquery.ScalarQueryParameter(k, "STRING", None) for k in ("game_id", "market_key", "bookmaker_key")]
    rows = [dict(r) for r in bq.query(closing_lines_sql(project, dataset),
                                      job_config=bigquery.QueryJobConfig(query_parameters=params)).result()]
    first = min((r["game_id"] for r in rows), default=None)
    return [r for r in rows if r["game_id"] == first]


def _quote(point, price_american, market_key: str) -> str:
    """e.g. -110, -3.5 -110 (a spread, signed), 220.5 -110 (a total)."""
    if price_american is None:
        return "-"
    if point is None:
        return f"{price_american:+d}"
    return f"{point:{'+' if 'spreads' in market_key else ''}g} {price_american:+d}"


def print_closing_lines(rows: list[dict], game_date: str) -> None:
    games = [r for r in rows if not r["market_key"].startswith("player_")]
    if not rows:
        print("closing lines: none")
        return
    first = rows[0]
    print(f"closing lines of {first['away_team']} at {first['home_team']} ({first['game_id']}), "
          f"last pre-tip snapshot, no-vig multiplicative:")
    print(f"  {'book':<15} {'market':<9} {'side':<24} {'open':>12} {'close':>12} {'no-vig':>7}")
    for r in sorted(games, key=lambda r: (r["market_key"], r["side"], r["bookmaker_key"])):
        nv = r["close_no_vig_probability"]
        print(f"  {r['bookmaker_key']:<15} {r['market_key']:<9} {r['side']:<24} "
              f"{_quote(r['open_point'], r['open_price_american'], r['market_key']):>12} "
              f"{_quote(r['close_point'], r['close_price_american'], r['market_key']):>12} {'-' if nv is None else f'{nv:.3f}':>7}")
    print(f"  (+{len(rows) - len(games)} player-prop closes: oddsbatch lines --date {game_date} --game {first['game_id']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oddsbatch-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=".oddsbatch")
    parser.add_argument("--games", type=int, default=7)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=14)
    parser.add_argument("--settle-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir)
    if (state_dir / "local.env").exists():  # a stack left from an interrupted run: start clean
        subprocess.run([sys.executable, "-m", "oddsbatch.cli", "down", "--state-dir", str(state_dir)], check=False)
    _oddsbatch("up", "--state-dir", str(state_dir), "--settle-seconds", str(args.settle_seconds),
               "--sweep-seconds", str(SWEEP_SECONDS))
    try:
        with tempfile.TemporaryDirectory(prefix="oddsbatch-demo-") as tmp:
            _oddsbatch("synth", "--date", DEMO_DATE, "--games", str(args.games), "--snapshots", str(args.snapshots),
                       "--out", tmp)
            files = sum(1 for p in Path(tmp).rglob("*") if p.is_file())
            started = time.monotonic()
            _oddsbatch("replay", tmp, "--concurrency", str(args.concurrency), "--state-dir", str(state_dir))
            _oddsbatch("wait", "--state-dir", str(state_dir), "--timeout", "600")
            seconds = time.monotonic() - started
        env = load_env(state_dir)
        counts = count_results(env, DEMO_DATE)
        closes = closing_lines_of_one_game(env, DEMO_DATE)
        status = status_after_a_sweep(env, state_dir)
    finally:
        subprocess.run([sys.executable, "-m", "oddsbatch.cli", "down", "--state-dir", str(state_dir)], check=False)
    print(f"demo: game_lines_rows={counts['game_lines_rows']} player_props_rows={counts['player_props_rows']} "
          f"merges={counts['merges']} files={files} quarantined={counts['quarantined']} seconds={seconds:.2f}")
    print_closing_lines(closes, DEMO_DATE)
    print("status after the sweep (oddsbatch status, pipeline part):")
    pipeline = status.split("locks held:", 1)
    print("locks held:" + pipeline[1] if len(pipeline) == 2 else status, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
