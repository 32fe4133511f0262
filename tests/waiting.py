"""Waiting on events in tests, not on the clock.

A test that needs something to have happened (a file written, a log line, a document) polls
for that very thing. The guard only stops a test that would otherwise hang: it fails the test
with what was awaited, and it never lets one pass; a loaded machine only makes the wait longer.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

GUARD_SECONDS = 120.0
POLL_SECONDS = 0.05


def wait_for(condition: Callable[[], T], what: str, guard: float = GUARD_SECONDS, poll: float = POLL_SECONDS) -> T:
    """The first truthy value of condition(), polled until it comes; AssertionError after `guard` s."""
    give_up = time.monotonic() + guard
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= give_up:
            raise AssertionError(f"never happened (hang guard of {guard:g}s): {what}")
        time.sleep(poll)
