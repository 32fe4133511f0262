"""A season backfill, end to end (issue 19, item 4), on the local stack.

A season of consecutive game dates (160 by default), both endpoints, each date's files as
`oddsbatch synth --historical` writes them (seeded), uploaded at once under the `-history/`
prefix, as a backfill lands. The BigQuery emulator holds BigQuery's limits on mutating DML per
table: 2 running, 20 queued, the next refused with resourcesExceeded "Too many DML statements
outstanding" (https://cloud.google.com/bigquery/docs/data-manipulation-language, "UPDATE,
DELETE, MERGE DML concurrency"; the launcher's `--dml-running/--dml-queued`).

Figures, all read from what ran, so they hold whatever the code under test does (one MERGE per
date, or several dates per MERGE):
- season_latency: last upload -> COUNT(*) of every date of both tables equals its distinct
  natural keys (one GROUP BY game_date query per table per poll);
- season_merges_per_table: MERGE jobs that ran per target table, from the emulator's job list
  (the target read from each statement), refused attempts apart;
- season_dml_queue_errors: statements the queue limit refused (the emulator's failed jobs),
  against the functions' `bigquery_retry` lines (retried, or given up);
- season_peak_rss: VmHWM of each function's worker;
- season_rows_exact: every natural key of every date stored exactly once (lost, duplicated,
  unexpected), from one GROUP BY over the key columns per table;
- season_pending_left: lock and pending-marker documents left once the stack is idle.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal

from oddsbatch import sql, synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.errors import OddsbatchError
from oddsbatch.local.provision import collections
from oddsbatch.tables import table_for_endpoint

from .common import Run, log
from .stack_bench import Bench, _secs, merged_records, natural_keys, phases

SEASON_START = date(2025, 10, 21)  # opening night of an NBA season
GAMES_PER_DATE = 7  # an NBA date's usual slate; fewer when fewer files per date are asked for
MERGE_TARGET = re.compile(r"^\s*MERGE\s+(?:INTO\s+)?`?([^`\s]+)`?", re.IGNORECASE | re.MULTILINE)
QUEUE_LIMIT = "Too many DML statements outstanding"


def scale(files_per_date: int) -> tuple[int, int]:
    """(games, snapshots) of a date with about `files_per_date` files per endpoint."""
    games = max(1, min(GAMES_PER_DATE, files_per_date))
    return games, max(1, math.ceil(files_per_date / games))


def season_files(days: list[date], games: int, snapshots: int, seed: int) -> list[tuple[str, bytes]]:
    """The backfill tree: each date as `oddsbatch synth --historical` writes it, seeded per date."""
    return [f for i, day in enumerate(days)
            for f in synth.synthesize_day(day, games, snapshots, seed + i, historical=True)]


def key_value(value):
    """A natural-key value in one form, as transform stages it and as BigQuery returns it."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        number = Decimal(str(value)).normalize()
        return format(number if number else Decimal(0), "f")  # NUMERIC has no -0: a line of -0.0 is stored as 0
    return value


def season_query(b: Bench, statement: str, days: list[date]) -> list:
    """Run one of sql's range statements over the season's dates (the bench's job-id prefix)."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("start_date", "DATE", days[0].isoformat()),
        bigquery.ScalarQueryParameter("end_date", "DATE", days[-1].isoformat())])
    return list(b.bq().query(statement, job_config=config, job_id_prefix="bench_").result())


def table_of(b: Bench, endpoint: str) -> str:
    return sql.table_path(b.stack.project, b.stack.dataset, ENDPOINT_TABLES[endpoint])


def wait_queryable(b: Bench, want: Counter, days: list[date], since: float, timeout: float) -> tuple[float | None, list]:
    """Seconds from `since` until COUNT(*) of every (endpoint, date) reaches its expected rows;
    (None, what is still short) after `timeout`. Polled every 5% of the time so far (1 to 5 s):
    each poll is two queries on the emulator the functions are MERGEing into."""
    pending = set(want)
    while True:
        for endpoint in ENDPOINT_TABLES:
            for row in season_query(b, sql.rows_per_date_sql(table_of(b, endpoint)), days):
                key = (endpoint, row["game_date"].isoformat())
                if key in pending and row["n"] >= want[key]:
                    pending.discard(key)
        elapsed = time.monotonic() - since
        if not pending:
            return elapsed, []
        if elapsed > timeout:
            return None, sorted(pending)
        time.sleep(min(5.0, max(1.0, elapsed / 20)))


def exactness(b: Bench, expected: dict[str, set], days: list[date]) -> tuple[dict[str, int], list]:
    """Lost, duplicated (stored copies beyond the first) and unexpected rows, per natural key;
    and a few of the keys concerned, to say what went wrong."""
    out = Counter(lost=0, duplicated=0, unexpected=0)
    examples = []
    for endpoint, keys in expected.items():
        spec = table_for_endpoint(endpoint)
        want = {tuple(key_value(v) for v in key) for key in keys}
        got = Counter()
        for row in season_query(b, sql.key_counts_sql(spec, table_of(b, endpoint)), days):
            got[tuple(key_value(row[c]) for c in spec.natural_key)] += row["n"]
        lost = want - set(got)
        twice = [k for k, n in got.items() if n > 1]
        unexpected = [k for k in got if k not in want]
        out["lost"] += len(lost)
        out["duplicated"] += sum(got[k] - 1 for k in twice)
        out["unexpected"] += sum(got[k] for k in unexpected)
        examples += [("lost", k) for k in sorted(lost, key=str)[:2]] + [("twice", k) for k in twice[:2]]
        examples += [("unexpected", k) for k in unexpected[:2]]
    return dict(out), examples


def dml_jobs(jobs: list) -> dict[str, Counter]:
    """Table -> MERGE jobs that ran (`merged`) and were refused by the queue limit (`refused`)."""
    out = {table: Counter(merged=0, refused=0) for table in ENDPOINT_TABLES.values()}
    for job in jobs:
        query = getattr(job, "query", None) or ""
        m = MERGE_TARGET.search(query)  # a refused job has no statement type: its text says MERGE
        if m:
            table = m.group(1).rsplit(".", 1)[-1]
        elif getattr(job, "statement_type", None) == "MERGE":  # a form the pattern missed: counted, never dropped
            table = next((t for t in out if t in query or t in job.job_id), "?")
        else:
            continue
        error = getattr(job, "error_result", None)
        counts = out.setdefault(table, Counter(merged=0, refused=0))
        if error and QUEUE_LIMIT in str(error.get("message", "")):
            counts["refused"] += 1
        elif not error:
            counts["merged"] += 1
        else:
            counts["failed"] += 1
    return out


def retries(b: Bench) -> Counter:
    """The functions' `bigquery_retry` lines by (reason, retrying)."""
    out = Counter()
    for fn in ("game_lines", "player_props"):
        for line in b.stack.log_text(fn).splitlines():
            if '"bigquery_retry"' in line:
                record = json.loads(line[line.index("{"):])
                out[(record.get("reason"), record.get("retrying"))] += 1
    return out


def leftover_documents(b: Bench) -> dict[str, int]:
    """Lock and pending-marker documents in Firestore now."""
    locks, pending, _ = collections(b.stack.env)
    db = b.stack.firestore()
    return {name: sum(1 for _ in db.collection(name).stream()) for name in (locks, pending)}


def run(r: Run) -> None:
    a = r.args
    dates = a.season_dates or (20 if a.small else 160)
    running, queued = a.season_dml_limit
    games, snapshots = scale(a.season_files_per_date)
    days = [SEASON_START + timedelta(days=i) for i in range(dates)]
    extra = " ".join(f for f in (f"--season-dates {a.season_dates}" if a.season_dates else "",
                                 f"--season-files-per-date {a.season_files_per_date}"
                                 if a.season_files_per_date != 2 else "",
                                 f"--season-dml-limit {running},{queued}" if (running, queued) != (2, 20) else "")
                     if f)
    files = season_files(days, games, snapshots, a.seed)
    expected = natural_keys(files)
    want = Counter()
    for endpoint, keys in expected.items():
        want.update((endpoint, key[0]) for key in keys)  # the key leads with game_date
    size = sum(len(d) for _, d in files)
    label = (f"{dates} dates from {days[0]} x 2 endpoints x {games * snapshots} files ({games} games x {snapshots} "
             f"snapshots, synth --historical, seed {a.seed}): {len(files)} files, {size / 1e6:.0f} MB, "
             f"{sum(want.values())} rows under -history/; DML limit {running} running + {queued} queued per table")
    timeout = 900 + 3.0 * len(files)  # a bound that fails the figure, far above what a run takes
    log(f"season: {label}")
    with Bench(r, "batch", a.settle[0], "season", dml_running=running, dml_queued=queued) as b:
        idle_memory = b.memory()
        # settings the functions inherit from this environment (e.g. a holder's dates per MERGE): the figure says so
        inherited = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("ODDSBATCH_")
                           and not k.startswith("ODDSBATCH_BENCH_") and k not in b.stack.env)
        label += f"; functions' settings from the environment: {', '.join(inherited) or 'none (defaults)'}"
        before = b.job_ids()
        cpu_before = b.cpu_seconds()
        events = b.stack._baseline + len(files)  # bridge `received` once every finalize event arrived
        first, last = b.upload(files, 32)
        latency, short = wait_queryable(b, want, days, last, timeout)
        delivered = b.stack.bridge_status()["received"] >= events
        log(f"season: rows queryable after {_secs(latency)} (short: {short[:5]})")
        idle_error = ""
        t_idle = time.monotonic()
        try:
            b.stack.wait_idle(expected_events=len(files), timeout=timeout if latency is not None else 120)
        except OddsbatchError as exc:
            idle_error = str(exc)
        idle_after = time.monotonic() - last if not idle_error else None
        cpu = sum(b.cpu_seconds().values()) - sum(cpu_before.values())
        memory = b.memory()
        left = leftover_documents(b)
        merges = dml_jobs(b.new_jobs(before))
        retried = retries(b)
        rejected = b.stack.log_text("bigquery").count("dml_limit_rejected")
        wrong, examples = exactness(b, expected, days)
        rounds = phases(merged_records(b))
        log(f"season: done in {time.monotonic() - t_idle:.0f}s after the rows; merges {merges}; retries {retried}")

    def by_table(key):
        return ", ".join(f"{t.removeprefix('odds_api_')} {c[key]}" for t, c in merges.items())

    timed_out = f"TIMED OUT, still short (endpoint, date): {short[:8]}; " if latency is None else ""
    r.add("season", "season_latency", round(latency) if latency is not None else "timed out",  # whole s, not 1.12e+03
          "s (last upload -> every row of every date queryable)", target=f"within {timeout:.0f} s",
          met=latency is not None,
          note=f"{timed_out}{label}; uploads {last - first:.1f} s from 32 threads; bridge had every event by then: {delivered}; "
               f"stack idle {_secs(idle_after)} after the last upload{' (' + idle_error + ')' if idle_error else ''}; "
               f"{cpu:.0f} CPU s of the stack; logs: {rounds}", extra=extra)
    worst = max(c["merged"] for c in merges.values())
    bound = max(1, dates // 4)
    r.add("season", "season_merges_per_table", worst, f"MERGEs (max over tables, {dates} dates)",
          target=f"<= {bound} (well below {dates} dates)", met=worst <= bound,
          note=f"MERGEs that ran: {by_table('merged')}; refused by the queue limit: {by_table('refused')}; "
               f"failed otherwise: {by_table('failed')}; from the emulator's job list", extra=extra)
    queue_retried = retried[("resourcesExceeded", True)]
    gave_up = retried[("resourcesExceeded", False)]
    refused = sum(c["refused"] for c in merges.values())
    r.add("season", "season_dml_queue_errors", refused, "MERGEs refused by the queue limit",
          target="each retried, none given up", met=gave_up == 0 and queue_retried >= refused,
          note=f"emulator: {rejected} statements refused (`dml_limit_rejected`); functions' bigquery_retry: "
               f"resourcesExceeded retried {queue_retried}, given up {gave_up}; every retry by (reason, retrying): "
               f"{dict(retried) or 'none'}. Locally Google's Pub/Sub emulator pushes at most 2 messages of a "
               f"subscription at once, so at most 2 holders of an endpoint run at once here (Eventarc pushes "
               f"as many as the instances take): `--season-dml-limit 1,0` meets the limit", extra=extra)
    peak = max(m["VmHWM"] for m in memory.values())
    r.add("season", "season_peak_rss", round(peak), "MiB (VmHWM, max over the function workers)",
          target="< 512 MiB", met=peak < 512,
          note="; ".join(f"{fn}: {m['VmHWM']:.0f} (idle {idle_memory[fn]['VmHWM']:.0f})" for fn, m in memory.items()),
          extra=extra)
    bad = sum(wrong.values())
    r.add("season", "season_rows_exact", bad, "rows lost, duplicated or unexpected", target="0", met=bad == 0,
          note=f"{wrong}; per natural key over {sum(want.values())} keys of {dates} dates x 2 tables"
               + (f"; e.g. {examples[:4]}" if examples else ""), extra=extra)
    pending = sum(left.values())
    r.add("season", "season_pending_left", pending, "lock + pending documents once idle", target="0",
          met=pending == 0 and not idle_error, note=f"{left}{'; ' + idle_error if idle_error else ''}", extra=extra)
