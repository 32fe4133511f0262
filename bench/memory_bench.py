"""Memory of one function worker at the deployed concurrency (issue 19), on the local stack.

One stack with THREADS=8 (the deployed concurrency) and the deployed memory budget (40% of
512Mi, config.py), fresh so each worker's VmHWM starts at its idle figure:

1. one valid 30 MB game-lines file (one event, ~53,600 bookmakers; synth.synthesize_large_file):
   the game_lines worker's peak RSS above its idle peak, and that every row landed;
2. 8 game dates x 300 player-props files uploaded at once (8 holders in one worker): the
   player_props worker's peak RSS, and that every row of every date landed.

Peak RSS is the worker's VmHWM (/proc/<pid>/status). Staged rows touch no temporary file: each
file's go to a staging object in the staging bucket (1 MiB upload chunks for a streamed file) and
the load job reads them from gs:// (oddsbatch.staged_objects), so VmHWM is the whole figure, as
on Cloud Run gen2, where /tmp would count against the instance's memory.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.paths import parse_object_name
from oddsbatch.streaming import StreamedFile, stream_of

from .common import Run, log
from .stack_bench import Bench, expected_rows

THREADS = 8
LARGE_FILE_BYTES = 30_000_000


def _wait_rows(b: Bench, want: dict[tuple[str, str], int], timeout: float) -> float:
    """Seconds until COUNT(*) of every (endpoint, day) reaches its expected rows."""
    started = time.monotonic()
    pending = dict(want)
    while pending:
        for (endpoint, day), n in list(pending.items()):
            if b.count(endpoint, day) >= n:
                del pending[(endpoint, day)]
        if not pending:
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"rows not all queryable after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(1.0)
    return time.monotonic() - started


def _upload(b: Bench, files, concurrency: int) -> float:
    bucket = b.stack.storage().bucket(b.stack.bucket)

    def put(item):
        name, data = item
        bucket.blob(name).upload_from_string(data, content_type="application/json")

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(put, files))
    return time.monotonic() - t0


def run(r: Run) -> None:
    small = r.args.small
    dates, props_files = (2, 30) if small else (8, 300)
    large_bytes = 3_000_000 if small else LARGE_FILE_BYTES
    with Bench(r, "batch", r.args.settle[0], "memory", extra_env={"ODDSBATCH_FUNCTION_THREADS": str(THREADS)}) as b:
        idle = b.memory()
        log(f"memory: idle workers {idle}")

        # 1. one large valid file
        day = date(2025, 4, 10)
        name, data = synth.synthesize_large_file(day, large_bytes, seed=r.args.seed)
        streamed = StreamedFile(parse_object_name(name), stream_of(data), 1)
        for _ in streamed.texts():  # the rows it holds (each natural key once: every bookmaker is new)
            pass
        rows = streamed.rows
        _upload(b, [(name, data)], 1)
        seconds = _wait_rows(b, {("game-lines", day.isoformat()): rows}, timeout=3600)
        b.stack.wait_idle(expected_events=1, timeout=600)
        mem = b.memory()
        above = mem["game_lines"]["VmHWM"] - idle["game_lines"]["VmHWM"]
        exact = b.count("game-lines", day.isoformat()) == rows
        r.add("memory", "large_file_peak_rss_above_idle", round(above), "MiB (VmHWM above the idle VmHWM)",
              target="< 150 MiB", met=above < 150 and exact,
              note=f"one valid {len(data) / 1e6:.1f} MB game-lines file (one event, {rows} rows) through the "
                   f"game_lines worker (THREADS={THREADS}): VmHWM "
                   f"{mem['game_lines']['VmHWM']:.0f} MiB, idle {idle['game_lines']['VmHWM']:.0f}; rows exact: "
                   f"{exact}; last upload -> rows queryable {seconds:.1f} s")

        # 2. eight dates of player props at once
        files = []
        want = {}
        first = date(2025, 4, 12)
        for i in range(dates):
            d = first + timedelta(days=i)
            snaps = props_files // 10
            day_files = [f for f in synth.synthesize_day(d, games=10, snapshots=snaps, seed=r.args.seed + i)
                         if f[0].startswith("odds-api/player-props/")]
            files += day_files
            want[("player-props", d.isoformat())] = expected_rows(day_files)["player-props"]
        size = sum(len(d) for _, d in files)
        log(f"memory: uploading {len(files)} props files ({size / 1e6:.0f} MB) for {dates} dates at once")
        upload_seconds = _upload(b, files, 32)
        seconds = _wait_rows(b, want, timeout=3600)
        mem = b.memory()  # before waiting for stragglers: a late retry must not lose the figure
        try:
            b.stack.wait_idle(expected_events=len(files), timeout=900)
            mem = b.memory()
        except Exception as exc:  # noqa: BLE001 - the figure stands; say what was still running
            r.note(f"memory: the stack was not idle 900 s after the 8 dates' rows were queryable ({exc}); "
                   f"peak RSS read when they were")
        got = {k: b.count(*k) for k in want}
        exact = got == want
        peak = mem["player_props"]["VmHWM"]
        r.add("memory", "eight_dates_worker_peak_rss", round(peak), "MiB (VmHWM)", target="< 300 MiB",
              met=peak < 300 and exact,
              note=f"one player_props worker, THREADS={THREADS}: {dates} dates x {props_files} props files "
                   f"({len(files)} files, {size / 1e6:.0f} MB) uploaded at once from 32 threads in "
                   f"{upload_seconds:.1f} s; idle VmHWM {idle['player_props']['VmHWM']:.0f} MiB, VmRSS after "
                   f"{mem['player_props']['VmRSS']:.0f}; every row exact: {exact}; last upload -> all dates "
                   f"queryable {seconds:.1f} s; tables {', '.join(ENDPOINT_TABLES.values())}")
