"""Sections that need the local stack: burst, day, backfill (batch vs the per-file baseline),
work (Firestore/BigQuery work of one coalesced event), memory of a function worker.

Each stack is started in a fresh temp state dir and stopped by PID (Stack.stop) in a finally.
MERGEs and jobs are counted from the BigQuery emulator's job list (jobs the bench itself ran
carry the id prefix `bench_` and are excluded); latency is from the moment the last upload
returned to the moment COUNT(*) of both tables equals the distinct natural keys of the files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from oddsbatch import clients, sql, synth, transform
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint

from .common import Run, log, median

MODES = {"batch": "batch", "baseline": "per_file"}


# -- stack helpers --------------------------------------------------------------------------------
class Bench:
    def __init__(self, r: Run, mode: str, settle: float, tag: str, extra_env: dict | None = None,
                 **stack_options):
        self.r, self.mode, self.settle = r, mode, settle
        self.tmp = tempfile.TemporaryDirectory(prefix=f"oddsbatch-bench-{tag}-")
        self.stack = Stack(Path(self.tmp.name) / "state", settle_seconds=settle,
                           extra_env={"ODDSBATCH_MODE": MODES[mode], **(extra_env or {})}, **stack_options)

    def __enter__(self) -> "Bench":
        log(f"starting stack mode={self.mode} settle={self.settle}")
        self.stack.start()
        clients.reset()
        self.stack.apply_env()
        log(f"stack up in {self.stack.started_seconds}s")
        self.warm_up()
        return self

    def warm_up(self) -> None:
        """One small date through both functions first, so no measured burst pays the
        workers' first-request imports (google clients are imported lazily)."""
        files = list(synth.synthesize_day(date(2024, 12, 1), games=1, snapshots=1, seed=1))
        self.upload(files, 2)
        self.stack.wait_idle(expected_events=len(files), timeout=120)

    def __exit__(self, *exc) -> None:
        keep = os.environ.get("ODDSBATCH_BENCH_KEEP_LOGS")  # a directory: the functions' logs are copied there
        if keep:
            for fn in ("game_lines", "player_props"):
                Path(keep, f"{self.mode}-{fn}.log").write_text(self.stack.log_text(fn))
        try:
            self.stack.stop()
        finally:
            clients.reset()
            self.tmp.cleanup()

    # BigQuery
    def bq(self):
        return self.stack.bigquery()

    def job_ids(self) -> set[str]:
        return {j.job_id for j in self.bq().list_jobs(all_users=True)}

    def new_jobs(self, before: set[str]) -> list:
        return [j for j in self.bq().list_jobs(all_users=True)
                if j.job_id not in before and not j.job_id.startswith("bench_")]

    def count(self, endpoint: str, day: str) -> int:
        from google.cloud import bigquery

        table = sql.table_path(self.stack.project, self.stack.dataset, ENDPOINT_TABLES[endpoint])
        config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)])
        job = self.bq().query(sql.count_rows_sql(table), job_config=config, job_id_prefix="bench_")
        return int(next(iter(job.result()))["n"])

    def upload(self, files, concurrency: int) -> tuple[float, float]:
        """All files at once from `concurrency` threads; (first start, last return) monotonic."""
        bucket = self.stack.storage().bucket(self.stack.bucket)
        done = []

        def put(item):
            name, data = item
            bucket.blob(name).upload_from_string(data, content_type="application/json")
            done.append(time.monotonic())

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(put, files))
        return t0, max(done)

    def workers(self) -> dict[str, int]:
        """fn -> pid of the gunicorn worker (the child of the functions-framework process)."""
        out = {}
        for fn in ("game_lines", "player_props"):
            pid = self.stack.procs[fn]["pid"]
            kids = []
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    kids += [int(x) for x in (task / "children").read_text().split()]
                except OSError:
                    pass
            out[fn] = kids[0] if kids else pid
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """Process name -> CPU seconds (user + system) so far, for every process of the stack
        (the functions counted with their gunicorn workers) and this bench process itself."""
        tick = os.sysconf("SC_CLK_TCK")

        def used(pid: int) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

        out = {name: used(proc["pid"]) for name, proc in self.stack.procs.items()}
        for fn, worker in self.workers().items():
            if worker != self.stack.procs[fn]["pid"]:
                out[fn] += used(worker)
        out["bench (uploads, polls)"] = used(os.getpid())
        return out

    def memory(self) -> dict[str, dict[str, float]]:
        out = {}
        for fn, pid in self.workers().items():
            fields = {}
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM", "VmRSS")):
                    key, value = line.split(":", 1)
                    fields[key] = int(value.split()[0]) / 1024  # MiB
            out[fn] = fields
        return out


def _secs(value) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def merged_records(b: Bench, day: str | None = None) -> list[dict]:
    """The functions' `merged` log lines of one game date (of every date when None)."""
    out = []
    for fn in ("game_lines", "player_props"):
        for line in b.stack.log_text(fn).splitlines():
            if '"message": "merged"' in line and (day is None or day in line):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if day is None or str(rec.get("batch_key", "")).endswith(day):
                    out.append(rec)
    return out


def phases(records: list[dict]) -> str:
    """Median seconds per phase of the MERGE rounds, as the logs report them."""
    if not records:
        return "no merged log lines"
    parts = []
    for k in ("read", "load", "merge", "total"):
        vals = [r["seconds"][k] for r in records if k in (r.get("seconds") or {})]
        if vals:
            parts.append(f"{k} {median(vals):.2f}")
    text = f"{len(records)} rounds, median s per round: " + ", ".join(parts)
    if len(records) <= 8:
        text += "; rounds (table: files/rows/s read+load+merge=total): " + ", ".join(
            f"{str(r.get('table', '?')).removeprefix('odds_api_')}: {r.get('files')}/{r.get('rows')}/"
            f"{r['seconds'].get('read', 0)}+{r['seconds'].get('load', 0)}+{r['seconds'].get('merge', 0)}"
            f"={r['seconds'].get('total', 0)}" for r in records)
    return text


def natural_keys(files) -> dict[str, set[tuple]]:
    """Endpoint -> the distinct natural keys the files hold (live and -history objects alike)."""
    keys = {e: set() for e in ENDPOINT_TABLES}
    for name, data in files:
        endpoint = "game-lines" if name.startswith("odds-api/game-lines") else "player-props"
        spec = table_for_endpoint(endpoint)
        keys[endpoint].update(transform.natural_key(row, spec) for row in transform.rows_for_object(name, data, 1))
    return keys


def expected_rows(files) -> dict[str, int]:
    """Distinct natural keys per endpoint: what COUNT(*) reads once every file is merged."""
    return {e: len(k) for e, k in natural_keys(files).items()}


def scenario(b: Bench, files, day: str, concurrency: int, timeout: float, poll_seconds: float = 0.1) -> dict:
    """Upload `files` at once and time the last upload -> all rows queryable, checking the row
    counts every `poll_seconds` (each check is two queries on the same emulator the functions
    use: long scenarios poll less often so the measurement does not slow what it measures)."""
    want = expected_rows(files)
    before = b.job_ids()
    target = b.stack._baseline + len(files)  # bridge `received` once every finalize event arrived
    first, last = b.upload(files, concurrency)
    deadline = last + timeout
    pending = dict(want)
    poll = poll_seconds
    delivered = None  # seconds after the last upload when the bridge had received every finalize event
    while pending:
        if delivered is None:
            st = b.stack.bridge_status()
            if st["received"] >= target:
                delivered = time.monotonic() - last
        for endpoint in list(pending):
            if b.count(endpoint, day) >= want[endpoint]:
                del pending[endpoint]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{day}: rows of {', '.join(pending)} not all queryable after {timeout:.0f}s")
        time.sleep(poll)
        poll = poll_seconds if time.monotonic() - last < 10 else max(poll_seconds, 1.0)
    latency = time.monotonic() - last
    b.stack.wait_idle(expected_events=len(files), timeout=timeout)  # late rounds: count their jobs too
    got = {e: b.count(e, day) for e in ENDPOINT_TABLES}
    jobs = b.new_jobs(before)
    merges = {e: sum(1 for j in jobs if "_merge_" in j.job_id and ENDPOINT_TABLES[e] in j.job_id)
              for e in ENDPOINT_TABLES}
    loads = sum(1 for j in jobs if "_load_" in j.job_id)  # job ids end with the attempt: ..._load_1
    return {"phases": phases(merged_records(b, day)), "delivered": delivered, "files": len(files), "rows": sum(want.values()), "rows_ok": got == want, "latency": latency,
            "upload_spread": last - first, "merges": merges, "jobs": len(jobs), "loads": loads}


# -- sections -------------------------------------------------------------------------------------
def burst_files(day: date, seed: int):
    return list(synth.synthesize_day(day, games=7, snapshots=1, seed=seed))  # 7 games x 2 endpoints


def run_bursts(r: Run, b: Bench, first_day: date, repeat: int) -> list[dict]:
    out = []
    for i in range(repeat):
        day = first_day + timedelta(days=i)
        res = scenario(b, burst_files(day, r.args.seed + i), day.isoformat(), 14, 300)
        log(f"burst {b.mode} settle={b.settle} #{i + 1}: {res}")
        out.append(res)
    return out


def report_bursts(r: Run, mode: str, settle: float, results: list[dict], extra: str = "") -> dict:
    lat = median([x["latency"] for x in results])
    per_table = [max(x["merges"].values()) for x in results]
    suffix = "" if mode == "baseline" else f"_settle{settle:g}"
    ok = all(x["rows_ok"] for x in results)
    note = (f"{len(results)} bursts of {results[0]['files']} files from 14 threads (uploads spread "
            f"{max(x['upload_spread'] for x in results):.2f}s); logs of the last burst: {results[-1]['phases']}; bridge had every event {_secs(results[-1]['delivered'])} after the last upload; per burst MERGEs per table "
            f"{[x['merges'] for x in results]}, jobs {[x['jobs'] for x in results]}; rows exact: {ok}")
    if mode == "batch":
        r.add("burst", f"burst_merges_per_table_{mode}{suffix}", max(per_table), "max over bursts",
              target="1 per table (2 at most)", met=max(per_table) <= 2, note=note, extra=extra)
    else:
        r.add("burst", f"burst_merges_per_table_{mode}", max(per_table), "max over bursts", note=note, extra=extra)
    r.add("burst", f"burst_jobs_{mode}{suffix}", median([x["jobs"] for x in results]), "BigQuery jobs per burst (median)",
          extra=extra)
    r.add("burst", f"burst_latency_{mode}{suffix}", round(lat, 2), "s (median, last upload -> all rows queryable)",
          note=f"each: {[round(x['latency'], 2) for x in results]}", extra=extra)
    return {"latency": lat, "rows_ok": ok}


def work_per_event(r: Run, b: Bench, events: int = 14) -> None:
    """handle_event in-process, lock held by someone else: count Firestore and BigQuery work."""
    from oddsbatch import batch
    from oddsbatch.config import Settings
    from oddsbatch.event import StorageEvent
    from oddsbatch.lock import BatchLock
    from oddsbatch.pending import PendingWork

    from .counting import CountingFirestore

    settings = Settings.from_env("game-lines", {**b.stack.env, "ODDSBATCH_MODE": "batch"})
    real = b.stack.firestore()
    day = "2025-04-01"
    from oddsbatch.paths import parse_object_name

    names = [f"odds-api/game-lines/{day}/bench{i:02d}.json" for i in range(events)]
    key = parse_object_name(names[0]).batch_key
    holder = BatchLock(real.collection(settings.lock_collection), key, owner="bench-other-holder",
                       lease=timedelta(seconds=600), ttl=timedelta(days=1))
    assert holder.acquire(), "bench could not take the lock"
    counter = CountingFirestore(real)
    original = batch.firestore_client
    batch.firestore_client = lambda *a, **k: counter
    before = b.job_ids()
    decisions = []
    quiet = io.StringIO()
    try:
        for i, name in enumerate(names):
            ev = StorageEvent(event_id=f"bench-ev-{i}", bucket=b.stack.bucket, name=name, generation=1000 + i,
                              created="2025-04-01T12:00:00Z", size=100)
            with contextlib.redirect_stdout(quiet):  # the coalesced log lines
                decisions.append(batch.handle_event(settings, ev))
    finally:
        batch.firestore_client = original
        jobs = b.new_jobs(before)
        PendingWork(real, settings.pending_collection, key, timedelta(days=1)).remove(
            PendingWork(real, settings.pending_collection, key, timedelta(days=1)).list())
        holder.release()
    c = counter.counts
    per = {k: v / events for k, v in c.items()}
    ops = ", ".join(f"{k} {v / events:g}" for k, v in sorted(counter.ops.items()))
    all_coalesced = all(d == "coalesced" for d in decisions)
    r.add("work", "coalesced_event_firestore_reads", per["reads"], "documents per event",
          note=f"{events} events, all coalesced: {all_coalesced}; RPCs per event: {ops}")
    r.add("work", "coalesced_event_firestore_writes", per["writes"], "document writes per event (incl. rejected create)")
    r.add("work", "coalesced_event_bigquery_jobs", len(jobs) / events, "jobs per event", target="0", met=len(jobs) == 0)


def check_merged_logs(r: Run, b: Bench) -> None:
    need = {"files", "rows", "merges", "bytes", "seconds", "inserted", "updated"}
    lines, missing = 0, set()
    for fn in ("game_lines", "player_props"):
        for line in b.stack.log_text(fn).splitlines():
            if '"message": "merged"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            lines += 1
            missing |= need - set(rec)
            missing |= {f"seconds.{k}" for k in ("read", "load", "merge", "total")} - {
                f"seconds.{k}" for k in (rec.get("seconds") or {})}
    r.add("burst", "merged_log_lines_checked", lines, target="files, rows, MERGEs, bytes, durations in each",
          met=lines > 0 and not missing, note=f"missing: {sorted(missing) or 'none'}")


def run(r: Run, sections: set[str]) -> None:
    a = r.args
    repeat = 1 if a.small else a.repeat
    day_games, day_snaps = (3, 5) if a.small else (10, 15)  # 300 files
    back_games, back_snaps = (5, 10) if a.small else (15, 34)  # ~1,020 files
    if a.backfill_snapshots:
        back_games, back_snaps = 15, a.backfill_snapshots
    shipped = a.settle[0]
    results = {}
    for mode in ("baseline", "batch"):
        if not sections & {"burst", "day", "work"}:
            break
        with Bench(r, mode, shipped, f"{mode}-main") as b:
            if "burst" in sections:
                results[("burst", mode)] = report_bursts(r, mode, shipped,
                                                         run_bursts(r, b, date(2025, 3, 1), repeat))
            if "day" in sections:
                files = list(synth.synthesize_day(date(2025, 3, 15), games=day_games, snapshots=day_snaps,
                                                  seed=a.seed))
                res = scenario(b, files, "2025-03-15", 14, 1800, poll_seconds=0.5)
                log(f"day {mode}: {res}")
                results[("day", mode)] = res
                per_table = max(res["merges"].values())
                r.add("day", f"day_merges_per_table_{mode}", per_table, f"MERGEs ({len(files)}-file day)",
                      note=f"MERGEs {res['merges']}, loads {res['loads']}, rows {res['rows']} exact: {res['rows_ok']}")
                r.add("day", f"day_jobs_{mode}", res["jobs"], f"BigQuery jobs ({len(files)}-file day)")
                r.add("day", f"day_latency_{mode}", round(res["latency"], 2), "s (last upload -> all rows queryable)",
                      note=f"uploads took {res['upload_spread']:.2f}s from 14 threads; bridge had every event "
                           f"{_secs(res['delivered'])} after the last upload; logs: {res['phases']}")
            if mode == "batch" and "work" in sections:
                work_per_event(r, b)
            if mode == "batch":
                check_merged_logs(r, b)
    for settle in a.settle[1:]:
        if "burst" not in sections:
            break
        with Bench(r, "batch", settle, f"batch-settle{settle:g}") as b:
            results[("burst", f"batch{settle:g}")] = report_bursts(
                r, "batch", settle, run_bursts(r, b, date(2025, 3, 1), repeat), extra=f"--settle {shipped:g},{settle:g}")
    if ("burst", "batch") in results and ("burst", "baseline") in results:
        base = results[("burst", "baseline")]["latency"]
        speed = base / results[("burst", "batch")]["latency"]
        r.add("burst", f"burst_speedup_settle{shipped:g}", round(speed, 2), "x baseline/batch latency",
              target=">= 5x", met=speed >= 5)
        for settle in a.settle[1:]:
            got = results.get(("burst", f"batch{settle:g}"))
            if got:
                s = base / got["latency"]
                r.add("burst", f"burst_speedup_settle{settle:g}", round(s, 2), "x baseline/batch latency",
                      target=">= 5x", met=s >= 5, extra=f"--settle {shipped:g},{settle:g}")
    if ("day", "batch") in results and ("day", "baseline") in results:
        s = results[("day", "baseline")]["latency"] / results[("day", "batch")]["latency"]
        r.add("day", "day_speedup", round(s, 2), "x baseline/batch latency")
    if "backfill" in sections:
        files = list(synth.synthesize_day(date(2025, 3, 20), games=back_games, snapshots=back_snaps, seed=a.seed))
        modes = ["batch"] if a.quick else ["batch", "baseline"]
        for mode in modes:
            with Bench(r, mode, shipped, f"{mode}-backfill") as b:
                idle = b.memory()
                cpu_before = b.cpu_seconds()
                res = scenario(b, files, "2025-03-20", 32, 3600, poll_seconds=0.5)
                cpu = {k: v - cpu_before.get(k, 0.0) for k, v in b.cpu_seconds().items()}
                mem = b.memory()
                log(f"backfill {mode}: {res} memory {mem}")
                results[("backfill", mode)] = res
                label = f"{len(files)} files, {res['rows']} rows, uploads {res['upload_spread']:.1f}s from 32 threads"
                if mode == "batch":
                    r.add("backfill", "backfill_latency_batch", round(res["latency"], 2), "s (last upload -> all rows queryable)",
                          target="< 20 s", met=res["latency"] < 20 and res["rows_ok"],
                          note=f"{label}; MERGEs {res['merges']}, jobs {res['jobs']}, rows exact: {res['rows_ok']}; "
                           f"bridge had every event {_secs(res['delivered'])} after the last upload; logs: {res['phases']}")
                    wall = res["upload_spread"] + res["latency"]
                    r.add("backfill", "backfill_cpu_seconds", round(sum(cpu.values()), 1),
                          f"CPU s (first upload -> stack idle; {wall:.1f} s first upload -> rows queryable, "
                          f"{os.cpu_count()} cores)",
                          note="per process: "
                               + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
                    peak = max(m["VmHWM"] for m in mem.values())
                    r.add("backfill", "function_worker_peak_rss", round(peak), "MiB (VmHWM)", target="< 512 MiB",
                          met=peak < 512,
                          note="; ".join(f"{fn}: VmHWM {m['VmHWM']:.0f} MiB (idle {idle[fn]['VmHWM']:.0f}), "
                                         f"VmRSS after {m['VmRSS']:.0f}" for fn, m in mem.items())
                          + f"; gunicorn worker of each function while it merged its half of the {len(files)}-file date")
                else:
                    r.add("backfill", "backfill_latency_baseline", round(res["latency"], 2), "s",
                          note=f"{label}; MERGEs {res['merges']}, jobs {res['jobs']}, rows exact: {res['rows_ok']}")
        if a.quick and ("day", "baseline") in results:
            d = results[("day", "baseline")]
            est = d["latency"] / d["files"] * len(files)
            r.add("backfill", "backfill_latency_baseline_estimate", round(est), "s (ESTIMATE)",
                  note=f"--quick: baseline backfill not run; linear extrapolation of the {d['files']}-file baseline day "
                       f"({d['latency']:.1f}s) to {len(files)} files")
        if ("backfill", "baseline") in results:
            s = results[("backfill", "baseline")]["latency"] / results[("backfill", "batch")]["latency"]
            r.add("backfill", "backfill_speedup", round(s, 2), "x baseline/batch latency")
