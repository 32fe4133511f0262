"""bench/RESULTS.md: figures, machine, date, commit, the command, notes."""

from __future__ import annotations

import time
from pathlib import Path

from .common import Run, commit, machine


SEASON_METHOD = (
    "Season backfill: a fresh stack (BigQuery's 2 running + 20 queued mutating DML statements per table); 160 "
    "consecutive game dates from 2025-10-21 x 2 endpoints, each date `synthesize_day(historical=True)` (what "
    "`oddsbatch synth --historical` writes) seeded per date, uploaded at once from 32 threads under `-history/`. "
    "Latency: last upload -> `COUNT(*)` per game date of both tables (one GROUP BY query per table, polled every 5% "
    "of the time so far, 1 to 5 s) equals each date's distinct natural keys. MERGEs per table: the emulator's "
    "MERGE jobs by the target named in the statement, refused ones (\"Too many DML statements outstanding\") "
    "apart, so one MERGE per date and several dates per MERGE count alike. Queue refusals against the functions' "
    "`bigquery_retry` lines. Exactness: the stored rows per natural key over the season (one GROUP BY per table) "
    "against the keys the files hold: lost, stored twice, unexpected. Pending: lock and pending-marker documents "
    "once the stack is idle. Google's Pub/Sub emulator pushes at most 2 messages of a subscription at once, so "
    "locally an endpoint runs at most 2 holders and the 2 + 20 queue is not met (`--season-dml-limit 1,0` meets it)."
)

METHOD = [
    "Stacks: `oddsbatch.local.stack.Stack` on 127.0.0.1 (fake-gcs-server, Firestore emulator, local-bigquery, "
    "event bridge, both functions under functions-framework), a fresh stack per mode and scenario group; "
    "baseline = `ODDSBATCH_MODE=per_file` (one load + one MERGE per file, no lock) on the same build. Each stack "
    "first ingests one small warm-up date, so no measured figure pays a worker's first-request imports.",
    "Burst: one scrape cycle, 7 games x 2 endpoints = 14 files uploaded at once from 14 threads (so 14 concurrent "
    "events, all within well under the issue's 10 s), repeated on separate game dates; median latency.",
    "Latency: from the return of the last upload to the moment `COUNT(*)` of both tables for that game date equals "
    "the number of distinct natural keys the files hold (polled every 0.1 s in a burst, every 0.5 s for the "
    "300- and 1,000-file dates, then every 1 s from 10 s after the last upload).",
    "MERGEs and jobs: BigQuery jobs listed before and after (after the stack is idle, so late rounds count); the "
    "bench's own count queries carry the `bench_` prefix and are excluded. MERGEs per table from the job ids.",
    "Transform: `transform.staged_for_object` (as `reading.read_object` runs it for a file read whole) over every "
    "file of `synthesize_day(games=15, snapshots=34)`, vs `json.loads` of the same bytes; process CPU seconds, "
    "best of 5, the two interleaved. Checked each run: the staged text is byte for byte `staging.encode` of "
    "`markets_for_object` (the rows built as dicts), and un-nested gives exactly `rows_for_object`.",
    "Memory: VmHWM of each function's gunicorn worker (child of the recorded functions-framework pid) after the "
    "1,000-file date; a fresh stack, so the peak is that date's. Staged rows go to the staging bucket, never "
    "to the temp directory (on Cloud Functions gen2 /tmp is in memory), so VmHWM is the whole figure.",
    "Work per event: `oddsbatch.batch.handle_event` in-process against the stack's emulators while the lock of "
    "its (endpoint, date) is held by another owner, through a counting proxy around the Firestore client; "
    "BigQuery jobs listed before and after.",
    "Cold start: `functions/<fn>/main.py` exec'd in a fresh interpreter (median of 7), then an event for an "
    "object outside the function's prefix handled, and sys.modules checked.",
    SEASON_METHOD,
]


def reasons(run: Run) -> list[str]:
    """Why a missed target was missed, from the run's own figures."""
    by = {f.name: f for f in run.figures}
    out = []
    t = by.get("transform_over_bare_parse")
    if t and not t.met:
        floor = by.get("reencode_parsed_input_over_bare_parse")
        stages = by.get("transform_stages_over_bare_parse")
        out.append(f"Why transform misses 2.5x: {by['transform_rows_per_s'].note}; {t.note}; per stage "
                   f"(parse + walk + write) {stages.value if stages else '?'} x the parse. Encoding the parsed input "
                   f"again, untouched, with the standard library's C encoder costs {floor.value if floor else '?'}x "
                   "the parse: the staging text is therefore written straight from the parsed values, from texts "
                   "made once per file, and what is left is the Python work per outcome (validate, pivot) and per "
                   "row (its text).")
    for f in run.figures:
        if f.name.startswith("burst_speedup_settle") and not f.met:
            settle = f.name.removeprefix("burst_speedup_settle")
            lat = by.get(f"burst_latency_batch_settle{settle}")
            others = [g for g in run.figures if g.name.startswith("burst_speedup_settle") and g is not f]
            alt = "; ".join(f"{g.name} = {g.value} ({'met' if g.met else 'missed'})" for g in others)
            out.append(f"Why the burst speed-up misses 5x at ODDSBATCH_SETTLE_SECONDS={settle}: the holder waits until "
                       f"no new file arrived for ODDSBATCH_SETTLE_QUIET_SECONDS (0.5 s), counting the queue every "
                       f"0.1 s, and the bridge delivers a burst's 14 events over a few hundred milliseconds, so "
                       f"the wait is ~1 s of the batch latency ({lat.value if lat else '?'} s); the rest is one "
                       f"round per table (read, load, MERGE) on 2 cores shared with the emulators"
                       + (f"; other settle caps: {alt}" if alt else "") + ". The baseline's latency is 14 loads "
                       "and 14 MERGEs queued behind the emulator's per-table write lock.")
    b = by.get("backfill_latency_batch")
    if b and not b.met:
        cpu = by.get("backfill_cpu_seconds")
        out.append("Why the 1,000-file date misses 20 s: the whole stack is CPU-bound on this machine's cores while "
                   "the date lands: every process of the stack (the 1,020 uploads, 1,020 events through the bridge "
                   "and the functions, their Firestore markers and lock attempts, the downloads and transforms, "
                   "the emulator's loads and MERGEs) shares them"
                   + (f": {cpu.value} {cpu.unit}; {cpu.note}" if cpu else "")
                   + ". The holder's rounds run while the event flood is still being handled, which slows "
                   "both (see the per-round seconds in the figure's note).")
    m = by.get("season_merges_per_table")
    if m and not m.met:
        out.append(f"Why the season misses {m.target}: {m.value} {m.unit}. A holder MERGEs what is pending for its "
                   "lock key; while that key is one (endpoint, game date), a backfill costs at least one MERGE per "
                   "date and table, and one more for each date whose later files arrived after its first round "
                   f"started ({m.note}).")
    return out


def write_results(run: Run, path: Path) -> None:
    m = machine()
    a = run.args
    kind = "SMALL development run (not the benchmark)" if a.small else ("quick run" if a.quick else "full run")
    lines = [
        "# oddsbatch benchmark results",
        "",
        f"Written by `make bench` (`python -m bench {run.argv}`): {kind}.",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(run.started))}, {run.seconds:.0f} s",
        f"- Commit: {commit()}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at the end {m['load']}",
        f"- Sections: {', '.join(sorted(a.sections))}; settle delays {', '.join(f'{s:g}' for s in a.settle)} s "
        f"(first = shipped default); seed {a.seed}",
        "",
        "| Figure | Value | Target | Met | Notes | Reproduce |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in run.figures:
        value = f"{f.value:.3g}" if isinstance(f.value, float) else str(f.value)
        met = "" if not f.target else ("yes" if f.met else "**no**")
        note = f.note.replace("|", "/")
        lines.append(f"| `{f.name}` | {value} {f.unit} | {f.target} | {met} | {note} | `{f.reproduce}` |")
    targets = [f for f in run.figures if f.target]
    if targets:
        lines += ["", "## Targets", ""]
        for f in targets:
            value = f"{f.value:.3g}" if isinstance(f.value, float) else str(f.value)
            lines.append(f"- {'MET' if f.met else '**MISSED**'}: `{f.name}` = {value} {f.unit} (target {f.target})")
        lines += [f"- {r}" for r in reasons(run)]
    lines += ["", "## Method", ""] + [f"- {m}" for m in METHOD]
    if a.quick:
        lines.append("- `--quick`: the per-file baseline was NOT run on the 1,000-file date; its figure is a "
                     "linear extrapolation of the baseline 300-file day, labelled ESTIMATE.")
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    if getattr(run, "profile", ""):
        lines += ["", "## cProfile of transform + serialization (tottime, top 8)", "", "```", run.profile, "```"]
    path.write_text("\n".join(lines) + "\n")
