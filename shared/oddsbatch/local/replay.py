"""`oddsbatch replay DIR` and `oddsbatch wait`: drive the local stack like the scraper does.

replay: uploads every file under DIR to the stack's bucket (object name = path relative to
DIR), N at once from one storage client, and records in <state-dir>/replay.json how many
finalize events the bridge should have received once they land (the GCS emulator publishes
a few milliseconds AFTER each upload returns, so events may still arrive after replay ends).

wait: returns once the bridge has received that many events, nothing is in flight or waiting
for Pub/Sub's redelivery, and the Firestore lock and pending-marker collections are empty, the
same over two consecutive polls; then prints the delivery state, the dead-letter subscription's
messages included (an event dead-lettered is not idle work: `reconcile --from-dead-letters`
replays it). Timeout: exit 2 with one line.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from concurrent import futures
from pathlib import Path

from ..errors import OddsbatchError
from .stack import apply_env, load_env

REPLAY_FILE = "replay.json"


def bridge_status(env) -> dict:
    try:
        with urllib.request.urlopen(env["ODDSBATCH_BRIDGE_STATUS_URL"], timeout=5) as r:
            return json.loads(r.read())
    except OSError as exc:
        raise OddsbatchError(f"event bridge not answering at {env['ODDSBATCH_BRIDGE_STATUS_URL']} ({exc}); "
                             f"is the stack up? (`oddsbatch status`)") from None


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/octet-stream"


def upload_tree(env, directory: str | os.PathLike, concurrency: int = 14, prefix: str = "") -> list[str]:
    from .. import clients

    root = Path(directory)
    if not root.is_dir():
        raise OddsbatchError(f"not a directory: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    bucket = clients.storage_client(env["ODDSBATCH_PROJECT"]).bucket(env["ODDSBATCH_BUCKET"])

    def put(path: Path) -> str:
        name = prefix + path.relative_to(root).as_posix()
        bucket.blob(name).upload_from_filename(str(path), content_type=_content_type(path))
        return name

    with futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(put, files))


def expect_events(state_dir, status: dict, count: int) -> int:
    """Add `count` expected events to the record of this bridge instance; returns the new target."""
    path = Path(state_dir) / REPLAY_FILE
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        rec = {}
    if rec.get("bridge") != status.get("instance"):
        rec = {}
    expected = max(int(rec.get("expected", 0)), int(status["received"])) + count
    path.write_text(json.dumps({"bridge": status.get("instance"), "expected": expected}))
    return expected


def expected_events(state_dir, status: dict) -> int:
    try:
        rec = json.loads((Path(state_dir) / REPLAY_FILE).read_text())
    except (OSError, ValueError):
        return 0
    return int(rec.get("expected", 0)) if rec.get("bridge") == status.get("instance") else 0


def cmd_replay(args) -> int:
    env = load_env(args.state_dir)
    apply_env(env)
    if args.concurrency < 1:
        raise ValueError("--concurrency must be >= 1")
    before = bridge_status(env)
    root = Path(args.dir)
    n_files = sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
    # Record first: a `wait` started while uploads run must already expect them.
    expected = expect_events(args.state_dir, before, n_files)
    t0 = time.monotonic()
    names = upload_tree(env, root, args.concurrency)
    took = time.monotonic() - t0
    print(f"replayed {len(names)} files to gs://{env['ODDSBATCH_BUCKET']} in {took:.2f}s "
          f"({args.concurrency} at once); bridge expects {expected} events")
    return 0


def _firestore_empty(env) -> dict[str, int]:
    from .. import clients
    from .provision import collections

    fs = clients.firestore_client(env["ODDSBATCH_PROJECT"])
    locks, pending, _ = collections(env)
    return {name: len(list(fs.collection(name).limit(1).stream())) for name in (locks, pending)}


def wait_idle(env, expected: int | None = None, timeout: float = 300.0, poll: float = 0.5,
              stable_polls: int = 2, state_dir=None) -> dict:
    """Block until the stack is idle (see module doc); returns the last bridge status.

    expected: total events the bridge must have received (default: what replay recorded in state_dir).
    """
    deadline = time.monotonic() + timeout
    calm = 0
    last = {}
    while True:
        status = bridge_status(env)
        if expected is None:
            expected = expected_events(state_dir, status) if state_dir is not None else 0
        busy = []
        if status["received"] < expected:
            busy.append(f"received {status['received']}/{expected} events")
        if status["in_flight"] or status["retrying"]:
            busy.append(f"{status['in_flight']} deliveries in flight ({status['retrying']} waiting to retry)")
        if not busy:
            docs = _firestore_empty(env)
            busy += [f"{name} not empty" for name, n in docs.items() if n]
        if busy:
            calm = 0
        else:
            calm = calm + 1 if status == last or calm == 0 else 1
        last = status
        if calm >= stable_polls:
            return status
        if time.monotonic() > deadline:
            raise OddsbatchError(f"timed out after {timeout:g}s: {'; '.join(busy) or 'still changing'}")
        time.sleep(poll)


def cmd_wait(args) -> int:
    env = load_env(args.state_dir)
    apply_env(env)
    t0 = time.monotonic()
    s = wait_idle(env, timeout=args.timeout, state_dir=args.state_dir)
    from .stack import delivery_line

    print(f"idle after {time.monotonic() - t0:.1f}s: received {s['received']}, delivered {s['delivered']}, "
          f"failed {s['failed']}, duplicates {s['duplicates']}")
    print(delivery_line(env))  # what the trigger subscriptions still owe, what was dead-lettered
    return 0
