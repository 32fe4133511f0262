"""Fault injection for tests, switched on only by environment variables.

Unset (production), every hook is a dictionary lookup that does nothing.

- ODDSBATCH_FAULT_CRASH_AT: comma-separated crash points (after_load, during_merge,
  after_merge, before_release); the process dies there with os._exit, as a killed instance
  would. during_merge is right after the MERGE job was inserted: the job runs on in BigQuery
  while its invocation is gone (what the MERGE fence, fence.py, exists for).
- ODDSBATCH_FAULT_CRASH_RATE: probability of crashing at an armed point (default 1.0); a
  point's own rate may follow, e.g. `0.15,during_merge=0.3`.
- ODDSBATCH_FAULT_SEED: seed of that draw (per process, mixed with the pid).
- ODDSBATCH_FAULT_ONCE_DIR: when set, each point crashes at most once across all
  processes (the first to create `{dir}/{point}` crashes), so a test knows the retry wins.
- ODDSBATCH_FAULT_SLEEP_AT / ODDSBATCH_FAULT_SLEEP_SECONDS: sleep at a point (a slow batch).
- ODDSBATCH_FAULT_PAUSE_AT / ODDSBATCH_FAULT_PAUSE_DIR: the first process to reach an armed point
  (the one that creates `{dir}/{point}.paused`) stays there until `{dir}/{point}.resume` exists
  (at most ODDSBATCH_FAULT_PAUSE_SECONDS, default 600, so a failed test hangs nothing); later
  arrivals go on. A test waits for the `.paused` file, not for the clock, to know the process
  is there, and decides when it goes on.
- ODDSBATCH_FAULT_FAIL_AT: comma-separated services (bigquery, firestore) whose next call
  fails with 503 ServiceUnavailable (a transient fault: the event must be retried). With
  ODDSBATCH_FAULT_ONCE_DIR each fails once across processes, else every time.
- ODDSBATCH_FAULT_MERGE_CONFLICTS: the first N attempts of every MERGE fail with
  BigQuery's serialization error.
"""

from __future__ import annotations

import os
import random
import sys
import time

CRASH_POINTS = ("after_load", "during_merge", "after_merge", "before_release")
PAUSE_POLL_SECONDS = 0.02
_rng: random.Random | None = None


def _points(variable: str) -> set[str]:
    return {p.strip() for p in os.environ.get(variable, "").split(",") if p.strip()}


def _draw() -> float:
    global _rng
    if _rng is None:
        _rng = random.Random(f"{os.environ.get('ODDSBATCH_FAULT_SEED', '0')}-{os.getpid()}")
    return _rng.random()


def point(name: str) -> None:
    """A named place in the batch where a test may crash or slow the process."""
    if name in _points("ODDSBATCH_FAULT_SLEEP_AT"):
        time.sleep(float(os.environ.get("ODDSBATCH_FAULT_SLEEP_SECONDS", "1")))
    if name in _points("ODDSBATCH_FAULT_PAUSE_AT"):
        _pause(name)
    if name in _points("ODDSBATCH_FAULT_CRASH_AT"):
        if _draw() < crash_rate(name) and _first_time(name):
            sys.stdout.write(f'{{"severity": "WARNING", "message": "fault_crash", "point": "{name}"}}\n')
            sys.stdout.flush()
            os._exit(70)


def crash_rate(name: str) -> float:
    """The crash probability of point `name`: its own `point=rate` entry, else the bare rate."""
    rate = 1.0
    for part in os.environ.get("ODDSBATCH_FAULT_CRASH_RATE", "1").split(","):
        point, _, value = part.strip().rpartition("=")
        if point == name:
            return float(value)
        if not point and value:
            rate = float(value)
    return rate


def _first_time(name: str) -> bool:
    once_dir = os.environ.get("ODDSBATCH_FAULT_ONCE_DIR")
    if not once_dir:
        return True
    try:
        os.close(os.open(os.path.join(once_dir, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _pause(name: str) -> None:
    """Stay at point `name` until the test resumes it (the first arrival only)."""
    pause_dir = os.environ.get("ODDSBATCH_FAULT_PAUSE_DIR")
    if not pause_dir:
        return
    try:
        os.close(os.open(os.path.join(pause_dir, f"{name}.paused"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # another arrival is (or was) the paused one
    sys.stdout.write(f'{{"severity": "WARNING", "message": "fault_paused", "point": "{name}"}}\n')
    sys.stdout.flush()
    resume = os.path.join(pause_dir, f"{name}.resume")
    give_up = time.monotonic() + float(os.environ.get("ODDSBATCH_FAULT_PAUSE_SECONDS", "600"))
    while not os.path.exists(resume) and time.monotonic() < give_up:
        time.sleep(PAUSE_POLL_SECONDS)  # a signal (SIGTERM, Ctrl-C) interrupts it like any sleep


def fail_point(service: str) -> None:
    """Raise the 503 a Google API answers when it is briefly unavailable."""
    if service in _points("ODDSBATCH_FAULT_FAIL_AT") and _first_time(f"fail-{service}"):
        from google.api_core.exceptions import ServiceUnavailable

        raise ServiceUnavailable(f"{service} unavailable (injected fault)")


def maybe_fail_merge(attempt: int) -> None:
    """Raise BigQuery's serialization error on the first N attempts of a MERGE."""
    failures = int(os.environ.get("ODDSBATCH_FAULT_MERGE_CONFLICTS", "0") or 0)
    if attempt <= failures:
        from google.api_core.exceptions import BadRequest

        raise BadRequest("Could not serialize access to table due to concurrent update (injected fault)")
