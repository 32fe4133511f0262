"""oddsbatch benchmark harness (`make bench`; not part of `make test`).

Brings the local stack up (batch mode and the per-file baseline, ODDSBATCH_MODE=per_file),
prints one `bench:` line per figure with the command that reproduces it, and writes
bench/RESULTS.md. Sections (`--only a,b`): transform, coldstart, work, burst, day, backfill.
"""
