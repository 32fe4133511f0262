"""`make demo`: a real-shaped day through the whole local stack, counted from the emulators.

Brings the stack up, synthesizes 7 games x 2 endpoints x 3 snapshots, uploads them all at
once, waits until no batch runs or is pending, then counts rows by querying the BigQuery
emulator and MERGEs from the MERGE jobs it actually ran. Always brings the stack down.
Last line, exactly:
demo: game_lines_rows=<int> player_props_rows=<int> merges=<int> files=<int> quarantined=<int> seconds=<float>
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
from ..sql import count_rows_sql, table_path
from .stack import load_env

DEMO_DATE = "2025-01-21"


def _oddsbatch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "oddsbatch.cli", *args], check=True)


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
    _oddsbatch("up", "--state-dir", str(state_dir), "--settle-seconds", str(args.settle_seconds))
    try:
        with tempfile.TemporaryDirectory(prefix="oddsbatch-demo-") as tmp:
            _oddsbatch("synth", "--date", DEMO_DATE, "--games", str(args.games), "--snapshots", str(args.snapshots),
                       "--out", tmp)
            files = sum(1 for p in Path(tmp).rglob("*") if p.is_file())
            started = time.monotonic()
            _oddsbatch("replay", tmp, "--concurrency", str(args.concurrency), "--state-dir", str(state_dir))
            _oddsbatch("wait", "--state-dir", str(state_dir), "--timeout", "600")
            seconds = time.monotonic() - started
        counts = count_results(load_env(state_dir), DEMO_DATE)
    finally:
        subprocess.run([sys.executable, "-m", "oddsbatch.cli", "down", "--state-dir", str(state_dir)], check=False)
    print(f"demo: game_lines_rows={counts['game_lines_rows']} player_props_rows={counts['player_props_rows']} "
          f"merges={counts['merges']} files={files} quarantined={counts['quarantined']} seconds={seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
