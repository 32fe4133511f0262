"""`python -m bench`: run the sections, print `bench:` lines, write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import REPO, Run
from .report import write_results

SECTIONS = ("transform", "coldstart", "work", "burst", "day", "backfill", "memory", "season")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections (default all): {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true",
                   help="skip the per-file baseline on the 1,000-file date (reported as an extrapolation)")
    p.add_argument("--small", action="store_true",
                   help="development sizes (small days, 1 burst): figures are NOT the benchmark")
    p.add_argument("--settle", default="5,2",
                   help="ODDSBATCH_SETTLE_SECONDS of the batch stacks (the holder waits for 0.5 s without new files, at most this long), the first being the shipped default (default 5,2)")
    p.add_argument("--repeat", type=int, default=3, help="bursts per stack (median latency), default 3")
    p.add_argument("--backfill-snapshots", type=int, default=None,
                   help="snapshots per game of the backfill date (15 games x 2 endpoints each; default 34 = "
                        "1,020 files, 10 with --small)")
    p.add_argument("--season-dates", type=int, default=None,
                   help="game dates of the season backfill (default 160, 20 with --small)")
    p.add_argument("--season-files-per-date", type=int, default=2,
                   help="files per endpoint and date of the season backfill (default 2; a real season's dates "
                        "hold hundreds, e.g. 210 = 7 games x 30 snapshots)")
    p.add_argument("--season-dml-limit", default="2,20", metavar="RUNNING,QUEUED",
                   help="the emulator's mutating DML statements per table in the season backfill: running, queued "
                        "(default BigQuery's 2,20; e.g. 1,0 to meet the limit with the local Pub/Sub's 2 pushes)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"),
                   help="where to write the results ('-' for nowhere)")
    args = p.parse_args(argv)
    args.sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.sections - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    args.settle = [float(x) for x in args.settle.split(",") if x.strip()]
    if args.season_files_per_date < 1 or (args.season_dates is not None and args.season_dates < 1):
        p.error("--season-dates and --season-files-per-date must be >= 1")
    try:
        limit = tuple(int(x) for x in args.season_dml_limit.split(","))
        if len(limit) != 2 or limit[0] < 1 or limit[1] < 0:
            raise ValueError
    except ValueError:
        p.error(f"--season-dml-limit must be RUNNING,QUEUED (running >= 1, queued >= 0), got {args.season_dml_limit!r}")
    args.season_dml_limit = limit
    return args


def main(argv=None) -> int:
    args = parse(argv)
    run = Run(args)
    run.argv = " ".join(sys.argv[1:] if argv is None else argv)
    run.profile = ""
    t0 = time.monotonic()
    if args.small:
        run.note("--small: development sizes, these figures are not the benchmark")
    if "transform" in args.sections:
        from . import transform_bench

        transform_bench.run(run)
    if "coldstart" in args.sections:
        from . import coldstart

        coldstart.run(run)
    if args.sections & {"work", "burst", "day", "backfill"}:
        from . import stack_bench

        stack_bench.run(run, args.sections)
    if "memory" in args.sections:
        from . import memory_bench

        memory_bench.run(run)
    if "season" in args.sections:
        from . import season_bench

        season_bench.run(run)
    run.seconds = time.monotonic() - t0
    missed = [f.name for f in run.figures if f.target and not f.met]
    print(f"bench: done in {run.seconds:.0f}s; targets met {sum(1 for f in run.figures if f.target and f.met)}, "
          f"missed {len(missed)}{': ' + ', '.join(missed) if missed else ''}")
    if args.results != "-":
        write_results(run, Path(args.results))
        print(f"bench: wrote {args.results}")
    return 0
