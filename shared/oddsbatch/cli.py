"""The `oddsbatch` command line: argument parsing only; each command lives with its module.

Errors a user can cause (bad input, a stack that is not up, a bad flag value) end in one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function, help)
COMMANDS = {
    "up": ("oddsbatch.local.stack", "cmd_up", "start the local stack (emulators, event bridge, both functions)"),
    "down": ("oddsbatch.local.stack", "cmd_down", "stop exactly the processes `up` started"),
    "status": ("oddsbatch.local.stack", "cmd_status", "show the local stack's processes and endpoints"),
    "synth": ("oddsbatch.synth", "cmd_synth", "write a realistic synthetic day in the real object layout"),
    "replay": ("oddsbatch.local.replay", "cmd_replay", "upload a tree of files to the bucket, all at once"),
    "wait": ("oddsbatch.local.replay", "cmd_wait", "return when no batch is running or pending"),
    "transform": ("oddsbatch.transform", "cmd_transform", "print, as NDJSON, the rows a file would stage"),
    "reconcile": ("oddsbatch.reconcile", "cmd_reconcile",
                  "merge what the bucket holds and the tables do not (lost events, backfills)"),
    "lines": ("oddsbatch.lines", "cmd_lines", "a game's closing lines and line moves (table, --json, --plot)"),
    "ready": ("oddsbatch.ready", "cmd_ready",
              "exit 0 once everything that landed for a date is merged (1: not yet, after --wait; 2: bad input)"),
    "import-legacy": ("oddsbatch.legacy", "cmd_import_legacy",
                      "count (dry run) or, with --apply, insert the old pipeline's rows into our tables"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oddsbatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = {name: sub.add_parser(name, help=help_) for name, (_, _, help_) in COMMANDS.items()}

    p["up"].add_argument("--state-dir", default=".oddsbatch", help="where local.env, logs and pids go")
    p["up"].add_argument("--settle-seconds", type=float, default=1.0, help="functions' settle delay")
    p["up"].add_argument("--sweep-seconds", type=float, default=60.0,
                         help="period of the local sweep timer (Cloud Scheduler's role; 0: no sweep)")
    p["up"].add_argument("--dml-latency-ms", default="0", metavar="MS",
                         help="BigQuery-like DML latency: each UPDATE / MERGE of the emulator runs this long "
                              "before it commits (BigQuery's take seconds), so retries and sweeps meet running MERGEs")
    p["down"].add_argument("--state-dir", default=".oddsbatch")
    p["status"].add_argument("--state-dir", default=".oddsbatch")

    p["synth"].add_argument("--date", required=True, help="game date YYYY-MM-DD")
    p["synth"].add_argument("--games", type=int, default=7)
    p["synth"].add_argument("--snapshots", type=int, default=3, help="snapshots per game and endpoint")
    p["synth"].add_argument("--out", required=True, help="output directory (object name = path under it)")
    p["synth"].add_argument("--seed", type=int, default=0)
    p["synth"].add_argument("--price-format", choices=["american", "decimal"], default="american")
    p["synth"].add_argument("--historical", action="store_true", help="write -history objects (wrapped payloads)")

    p["replay"].add_argument("dir", help="directory written by `oddsbatch synth` (or any tree)")
    p["replay"].add_argument("--concurrency", type=int, default=14)
    p["replay"].add_argument("--state-dir", default=".oddsbatch")
    p["wait"].add_argument("--timeout", type=float, default=300.0)
    p["wait"].add_argument("--state-dir", default=".oddsbatch")

    p["transform"].add_argument("files", nargs="+", metavar="FILE")
    p["transform"].add_argument("--endpoint", choices=["game-lines", "player-props"],
                                help="required when the endpoint is not in --object-name or the file's odds-api/... path")
    p["transform"].add_argument("--object-name", help="object name to assume (game date, snapshot time)")
    p["transform"].add_argument("--generation", type=int, default=0)
    p["reconcile"].add_argument("--date", help="one game date YYYY-MM-DD")
    p["reconcile"].add_argument("--from", dest="date_from", help="first game date of a range")
    p["reconcile"].add_argument("--to", dest="date_to", help="last game date of a range (inclusive)")
    p["reconcile"].add_argument("--endpoint", choices=["game-lines", "player-props"], help="default: both")
    p["reconcile"].add_argument("--bucket", help="landing bucket (default: $ODDSBATCH_BUCKET)")
    p["reconcile"].add_argument("--dry-run", action="store_true", help="report what is missing, merge nothing")
    # Validated by the command (one line and exit 2), as ready's flags.
    p["reconcile"].add_argument("--dates-per-merge", metavar="N",
                                help="game dates of an endpoint merged by one MERGE (1-100; default "
                                     "$ODDSBATCH_DATES_PER_MERGE, else 16)")
    p["reconcile"].add_argument("--from-dead-letters", metavar="SUBSCRIPTION",
                                help="replay the dates named by the dead letters of this pull subscription "
                                     "(projects/P/subscriptions/S: terraform output dead_letters_subscription)")
    p["reconcile"].add_argument("--state-dir", default=".oddsbatch",
                                help="local stack whose endpoints to use when no project is named "
                                     "(ODDSBATCH_PROJECT, GOOGLE_CLOUD_PROJECT)")
    p["lines"].add_argument("--date", required=True, help="game date YYYY-MM-DD")
    p["lines"].add_argument("--game", help="one event id (default: every game of the date)")
    p["lines"].add_argument("--market", help="one market key, e.g. spreads (default: all)")
    p["lines"].add_argument("--book", help="one bookmaker key, e.g. draftkings (default: all)")
    p["lines"].add_argument("--json", action="store_true", help="NDJSON, one close or move per line")
    p["lines"].add_argument("--plot", metavar="FILE.png", help="draw each book's line over minutes before tip")
    p["lines"].add_argument("--state-dir", default=".oddsbatch",
                            help="local stack whose endpoints to use when ODDSBATCH_PROJECT is not set")
    # Validated by the command (one line and exit 2 on a bad value), not by argparse's two-line usage error.
    p["ready"].add_argument("--date", help="game date YYYY-MM-DD")
    p["ready"].add_argument("--endpoint", help="game-lines or player-props (default: both)")
    p["ready"].add_argument("--wait", default="0", metavar="SECONDS",
                            help="keep polling this long before answering not ready (default 0: check once)")
    p["ready"].add_argument("--bucket", help="landing bucket (default: $ODDSBATCH_BUCKET)")
    p["ready"].add_argument("--state-dir", default=".oddsbatch",
                            help="local stack whose endpoints to use when no project is named")
    # Validated by the command (one line and exit 2), as ready's flags.
    p["import-legacy"].add_argument("--from", dest="date_from", metavar="DATE", help="first game date YYYY-MM-DD")
    p["import-legacy"].add_argument("--to", dest="date_to", metavar="DATE", help="last game date (inclusive)")
    p["import-legacy"].add_argument("--from-dataset", default="nba_raw", help="the old tables' dataset (default nba_raw)")
    p["import-legacy"].add_argument("--from-project", help="the old tables' project (default: ours)")
    p["import-legacy"].add_argument("--table", help="game-lines or player-points-props (default: both)")
    p["import-legacy"].add_argument("--apply", action="store_true",
                                    help="insert the rows (default: a dry run that only counts them)")
    p["import-legacy"].add_argument("--state-dir", default=".oddsbatch",
                                    help="local stack whose endpoints to use when no project is named")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name, _ = COMMANDS[args.command]
    func = getattr(importlib.import_module(module_name), func_name)
    from .errors import OddsbatchError

    try:
        return int(func(args) or 0)
    except (OddsbatchError, ValueError, OSError) as exc:
        print(f"oddsbatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"oddsbatch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
