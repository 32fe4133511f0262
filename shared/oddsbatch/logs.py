"""Structured logging: one JSON line per decision on stdout, which Cloud Logging parses.

Fields: severity, message (the decision: ignored / coalesced / batch_started / merged /
quarantined / failed ...), plus whatever context the caller passes (batch_key, run_id,
object, files, rows, merges, durations).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import date, datetime

_write_lock = threading.Lock()


def _default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def log(decision: str, /, severity: str = "INFO", **fields) -> dict:
    """Write one structured line and return it (tests read it back)."""
    record = {"severity": severity, "message": decision, "component": "oddsbatch", **fields}
    now = time.time()  # RFC 3339 with milliseconds: rounds of one batch are often under a second apart
    record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z")
    line = json.dumps(record, default=_default, sort_keys=False)
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return record
