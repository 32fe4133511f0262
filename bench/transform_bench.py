"""Transform throughput: markets_for_object + staging serialization vs a bare json.loads.

Times are process CPU seconds (best of N passes), so other work on a shared machine
inflates them less than wall time; wall time is reported too. Beside the figure: the
flat format staged before (one NDJSON line per row), and the floor no serializer on
the standard library can go under (re-encoding the parsed input, untouched).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import time
from datetime import date

from oddsbatch import staging, synth, transform
from oddsbatch.paths import parse_object_name
from oddsbatch.tables import table_for_endpoint

from .common import Run, log


def flat_ndjson(rows) -> bytes:
    """The staging format before (one full row per line, json.dumps per row)."""
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

    def reencode():  # the floor: serialize the parsed input again, no transform at all
        encode = staging._encode
        for _, data in files:
            encode(json.loads(data))

    def full():
        n = out = 0
        for gen, (name, data) in enumerate(files, 1):
            groups = transform.markets_for_object(name, data, gen)
            n += staging.row_count(groups)
            out += len(staging.encode(groups))
        return n, out

    def walk_only():
        for gen, (name, data) in enumerate(files, 1):
            transform.markets_for_object(name, data, gen)

    # The per-stage split of `full`, timed file by file as the holder runs them (timing each stage
    # over every file at once would keep every parsed document alive, and the garbage collector's
    # full passes over them would be charged to the later stages): parse (bytes -> document),
    # rows (validate, pivot, convert the prices, write each row's staging text), encode (join).
    refs = [parse_object_name(name) for name, _ in files]

    def split() -> tuple[float, float, float]:
        clock = time.process_time
        parse_s = rows_s = encode_s = 0.0
        for gen, ((_, data), ref) in enumerate(zip(files, refs), 1):
            t0 = clock()
            payload = transform.parse_payload(data)
            t1 = clock()
            groups = transform.markets_from_payload(ref, payload, gen)
            t2 = clock()
            staging.encode(groups)
            t3 = clock()
            parse_s, rows_s, encode_s = parse_s + t1 - t0, rows_s + t2 - t1, encode_s + t3 - t2
        return parse_s, rows_s, encode_s

    def before():
        out = 0
        for gen, (name, data) in enumerate(files, 1):
            out += len(flat_ndjson(transform.rows_for_object(name, data, gen)))
        return out

    bare_cpu, bare_wall, _ = _best(bare, passes)
    floor_cpu, _, _ = _best(reencode, passes)
    full_cpu, full_wall, (n_rows, out_bytes) = _best(full, passes)
    walk_cpu, _, _ = _best(walk_only, passes)
    parse_cpu, rows_cpu, encode_cpu = min((split() for _ in range(passes)), key=sum)
    before_cpu, _, before_bytes = _best(before, 1)
    exact = all(
        transform.flatten(staging.decode(staging.encode(transform.markets_for_object(name, data, gen))),
                          table_for_endpoint(parse_object_name(name).endpoint))
        == transform.rows_for_object(name, data, gen)
        for gen, (name, data) in enumerate(files, 1))
    label = f"{len(files)} files, {size / 1e6:.1f} MB in, {n_rows} rows, {out_bytes / 1e6:.1f} MB staged"
    r.add("transform", "transform_rows_per_s", round(n_rows / full_cpu), "rows/s", note=label)
    r.add("transform", "transform_mb_per_s", round(size / 1e6 / full_cpu, 1), "MB/s (input bytes)")
    r.add("transform", "bare_json_loads_mb_per_s", round(size / 1e6 / bare_cpu, 1), "MB/s")
    ratio = full_cpu / bare_cpu
    r.add("transform", "transform_over_bare_parse", round(ratio, 2), "x", target="<= 2.5x", met=ratio <= 2.5,
          note=f"CPU s: transform+staging {full_cpu:.3f}, json.loads {bare_cpu:.3f} "
               f"(wall {full_wall:.3f} / {bare_wall:.3f}); markets_for_object alone {walk_cpu:.3f} "
               f"({walk_cpu / bare_cpu:.1f}x), serialization {full_cpu - walk_cpu:.3f}; staged rows un-nest to "
               f"exactly rows_for_object: {exact}")
    r.add("transform", "transform_stages_over_bare_parse",
          " + ".join(f"{c / bare_cpu:.2f}" for c in (parse_cpu, rows_cpu, encode_cpu)), "x",
          note=f"parse (transform.parse_payload) {parse_cpu:.3f} + rows (markets_from_payload: validate, pivot, "
               f"convert prices, write each row's staging text) {rows_cpu:.3f} + encode (staging.encode: join "
               f"the texts) {encode_cpu:.3f} CPU s, file by file (best of {passes} passes), vs json.loads "
               f"{bare_cpu:.3f}")
    r.add("transform", "reencode_parsed_input_over_bare_parse", round(floor_cpu / bare_cpu, 2), "x",
          note=f"json.loads + the same C encoder over the parsed input, untouched: {floor_cpu:.3f} CPU s "
               f"(the floor for parse + any stdlib serialization of as much data as the input)")
    r.add("transform", "flat_rows_format_over_bare_parse", round(before_cpu / bare_cpu, 2), "x",
          note=f"the staging format before this one (one NDJSON line per full row, json.dumps per row): "
               f"{before_cpu:.3f} CPU s, {before_bytes / 1e6:.1f} MB staged vs {out_bytes / 1e6:.1f} MB now")
    if not exact:
        r.note("staged rows do NOT un-nest to rows_for_object: the staging format is wrong")
    prof = cProfile.Profile()
    prof.runcall(full)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    r.profile = "\n".join(lines[start:start + 9])
