"""Transform throughput: rows_for_object + NDJSON staging serialization vs a bare json.loads.

Times are process CPU seconds (best of N passes), so other work on a shared machine
inflates them less than wall time; wall time is reported too.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import time
from datetime import date

from oddsbatch import synth, transform
from oddsbatch.warehouse import ndjson

from .common import Run, log


def reference_ndjson(rows) -> bytes:
    """The serialization before the optimisation: one json.dumps per row (the output contract)."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode("utf-8")


def _best(fn, passes: int) -> tuple[float, float, object]:
    best_cpu, best_wall, result = float("inf"), float("inf"), None
    for _ in range(passes):
        c, w = time.process_time(), time.perf_counter()
        result = fn()
        best_cpu = min(best_cpu, time.process_time() - c)
        best_wall = min(best_wall, time.perf_counter() - w)
    return best_cpu, best_wall, result


def run(r: Run) -> None:
    games, snapshots = (5, 8) if r.args.small else (15, 34)
    files = list(synth.synthesize_day(date(2025, 2, 3), games=games, snapshots=snapshots, seed=r.args.seed))
    size = sum(len(d) for _, d in files)
    log(f"transform: {len(files)} files, {size / 1e6:.1f} MB")
    passes = 2 if r.args.small else 3

    def bare():
        for _, data in files:
            json.loads(data)

    def full(serialize=lambda rows: ndjson(rows, head=transform.MARKET_HEAD_COLUMNS)):
        n = out = 0
        for gen, (name, data) in enumerate(files, 1):
            rows = transform.rows_for_object(name, data, gen)
            n += len(rows)
            out += len(serialize(rows))
        return n, out

    def rows_only():
        for gen, (name, data) in enumerate(files, 1):
            transform.rows_for_object(name, data, gen)

    bare_cpu, bare_wall, _ = _best(bare, passes)
    full_cpu, full_wall, (n_rows, out_bytes) = _best(full, passes)
    before_cpu, before_wall, _ = _best(lambda: full(reference_ndjson), passes)
    rows_cpu, _, _ = _best(rows_only, passes)
    identical = all(ndjson(rows, head=transform.MARKET_HEAD_COLUMNS) == reference_ndjson(rows)
                    for rows in (transform.rows_for_object(n, d, g) for g, (n, d) in enumerate(files, 1)))
    label = f"{len(files)} files, {size / 1e6:.1f} MB in, {n_rows} rows, {out_bytes / 1e6:.1f} MB NDJSON out"
    r.add("transform", "transform_rows_per_s", round(n_rows / full_cpu), "rows/s", note=label)
    r.add("transform", "transform_mb_per_s", round(size / 1e6 / full_cpu, 1), "MB/s (input bytes)")
    r.add("transform", "bare_json_loads_mb_per_s", round(size / 1e6 / bare_cpu, 1), "MB/s")
    ratio = full_cpu / bare_cpu
    r.add("transform", "transform_over_bare_parse", round(ratio, 2), "x", target="<= 2x", met=ratio <= 2,
          note=f"CPU s: transform+ndjson {full_cpu:.3f}, json.loads {bare_cpu:.3f} "
               f"(wall {full_wall:.3f} / {bare_wall:.3f}); rows_for_object alone {rows_cpu:.3f} "
               f"({rows_cpu / bare_cpu:.1f}x), serialization {full_cpu - rows_cpu:.3f}")
    r.add("transform", "before_optimisation_over_bare_parse", round(before_cpu / bare_cpu, 2), "x",
          note=f"same day with the previous ndjson (json.dumps per row): {before_cpu:.3f} CPU s, "
               f"{round(n_rows / before_cpu)} rows/s; serialization alone {before_cpu - rows_cpu:.3f} s "
               f"-> {full_cpu - rows_cpu:.3f} s; output byte-identical: {identical}")
    if not identical:
        r.note("ndjson output DIFFERS from json.dumps per row: the optimisation is wrong")
    prof = cProfile.Profile()
    prof.runcall(full)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    r.profile = "\n".join(lines[start:start + 9])
