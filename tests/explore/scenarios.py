"""The scenarios the explorer runs, the world each schedule runs in, and what every schedule
must satisfy.

Each schedule builds a fresh world (in-memory Firestore, BigQuery, bucket; the scheduler's
clock) and runs the real `oddsbatch.batch.handle_event` for every delivery (and through it the
real pending queue, lock and holder). Only these names are swapped for the duration of a
schedule (module attributes, restored after it):

- batch.firestore_client, holder.storage_client, quarantine.storage_client: the in-memory
  services (fakes.py);
- holder.Warehouse: the real Warehouse with its injection seams: the fake BigQuery client,
  the scheduler's sleep, jitter 1.0 (deterministic backoff);
- batch.BatchLock: the real BatchLock with the scheduler's sleep;
- lock.threading: the scheduler's Thread/Event/Lock (scheduler.ThreadingShim). The heartbeat
  thread is kept, as a scheduler task running the real `_beat_loop`: it wakes on the virtual
  clock, its beat is a Firestore write like any other, and it dies with its invocation.
  Without it a live holder would look dead to its twin, which is the bug the heartbeat fixes;
- documents.utcnow: the virtual clock of the lock and the queue (Firestore's update/read times
  use the same clock);
- holder.ThreadPoolExecutor: runs the round's submissions inline. Its jobs are the staging
  table's creation (a table no one else can name: its id carries the round's run id) and
  object downloads (read-only objects): they touch nothing another invocation touches, so
  every order of them is equivalent to the inline one (partial-order reduction), and the
  create_table call is still a switch point;
- logs.log: kept in memory for the schedule's printout.

Settle is 0 (the holder lists at once): the settle only waits and counts markers, and every
order of marker writes against the holder's list is explored anyway. The deadline runs on
the real clock and never fires here (its own unit tests cover it); a holder cut short is
what a crash is.
"""

from __future__ import annotations

import inspect
import textwrap
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from oddsbatch import batch, documents, holder, lock, logs, quarantine, staging, transform
from oddsbatch.config import Settings
from oddsbatch.errors import TransientError
from oddsbatch.event import StorageEvent
from oddsbatch.tables import table_for_endpoint

from tests.unit.storage_fake import FakeStorage

from .fakes import ExploredFirestore, FakeBigQuery, virtual_utc
from .scheduler import DFS, Scenario, Scheduler, Task, ThreadingShim

DAY = "2025-01-21"
BUCKET = "landing"
EVENT_GAME = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


def _payload() -> bytes:
    from pathlib import Path

    data = (Path(__file__).parent.parent / "data" / "event_odds_game_lines_american_synthetic.json").read_bytes()
    return data.replace(b'"a1b2c3d4e5f6g7h8i9j0"', f'"{EVENT_GAME}"'.encode())


def object_name(i: int) -> str:
    return f"odds-api/game-lines/{DAY}/{EVENT_GAME}-BOSLAL/20250120_18{i:02d}00-snap-18{i:02d}.json"


@dataclass(frozen=True)
class Spec:
    """A scenario: `files` events of one key, the deliveries (event index per delivery: a repeated
    index is a duplicate delivery of that event), and the faults the scheduler may inject."""

    name: str
    files: int
    deliveries: tuple[int, ...]
    crash: bool = False
    lease_pass: bool = False
    heartbeat: bool = True  # a control switches the heartbeat thread off


SCENARIOS = {
    "duplicates": Spec("duplicates", files=3, deliveries=(0, 1, 2, 0)),
    # a holder and a duplicate delivery of its own event: the heartbeat against the twin's wait
    # needs 2 clock delays while the holder waits on BigQuery, so this one runs at a higher bound
    "twin": Spec("twin", files=1, deliveries=(0, 0)),
    "crash": Spec("crash", files=2, deliveries=(0, 1), crash=True),
    "lease": Spec("lease", files=2, deliveries=(0, 1), lease_pass=True),
}


@dataclass
class Outcome:
    schedules: int = 0
    pruned: int = 0  # of them, cut short at a state explored before
    crash_points: set = field(default_factory=set)  # (invocation, the point it died at) explored
    seen: dict = field(default_factory=dict)  # lock decisions met (log lines), for coverage checks
    two_merges: int = 0  # schedules where two MERGEs of the key were in flight at once
    by_reason: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)  # (problems, trace, logs)
    complete: bool = True
    seconds: float = 0.0

    def line(self, spec: Spec, bound: int) -> str:
        reasons = ",".join(f"{k}:{v}" for k, v in sorted(self.by_reason.items())) or "-"
        return (f"explore: scenario={spec.name} schedules={self.schedules} (cut at a known state: {self.pruned}) "
                f"two_merges_in_flight={self.two_merges} "
                f"({reasons}) failures={len(self.failures)} preemption_bound={bound} "
                f"exhaustive={'yes' if self.complete else 'no'} seconds={self.seconds:.1f}"
                + (f" crash_points={len(self.crash_points)}" if spec.crash else ""))


class InlineExecutor:
    """ThreadPoolExecutor's submit/map, run at once in the calling task."""

    def __init__(self, max_workers=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future

        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered by result(), as the pool does
            future.set_exception(exc)
        return future

    def map(self, fn, *iterables):
        return [fn(*args) for args in zip(*iterables)]


class _Logger:
    """lock.py's logger, kept with the schedule's log lines instead of stderr."""

    def __init__(self, lines: list[str], sched: Scheduler):
        self.lines, self.sched = lines, sched

    def _log(self, message, *args, **kwargs):
        who = self.sched._by_thread.get(threading.get_ident())
        self.lines.append(f"{who.name if who else '-'}: {message % args if args else message}")

    info = warning = error = debug = exception = _log


class DeterministicIds:
    """uuid4() for lock.py and holder.py (nonces, run ids): derived from the calling invocation
    and how many it drew, so a replay draws the same ids and equal states look equal."""

    def __init__(self, sched: Scheduler):
        self.sched, self.drawn = sched, {}

    def uuid4(self):
        import hashlib
        import uuid

        proc = self.sched.me().proc
        n = self.drawn[proc] = self.drawn.get(proc, 0) + 1
        return uuid.UUID(bytes=hashlib.md5(f"{proc}/{n}".encode()).digest())


class World:
    def __init__(self, spec: Spec, sched: Scheduler, settings: Settings, files: dict[str, bytes]):
        self.spec, self.sched, self.settings = spec, sched, settings
        self.table = table_for_endpoint(settings.endpoint)
        self.db = ExploredFirestore(sched)
        self.bq = FakeBigQuery(sched, self.table, f"{settings.project}.{settings.dataset}.{settings.table}")
        self.storage = FakeStorage(files)
        self.logs: list[str] = []
        self.ids = DeterministicIds(sched)
        sched.world_state = lambda: (self.db.shared_state(), self.bq.shared_state())

    @contextmanager
    def installed(self):
        sched, real_lock, real_warehouse = self.sched, lock.BatchLock, holder.Warehouse
        heartbeat = self.spec.heartbeat

        def make_lock(*args, **kwargs):
            kwargs["sleep"] = sched.sleep
            if not heartbeat:
                kwargs["beat_in_background"] = False
            return real_lock(*args, **kwargs)

        def make_warehouse(settings, spec, deadline=None):
            return real_warehouse(settings, spec, client=self.bq, sleep=sched.sleep, deadline=deadline,
                                  jitter=lambda: 1.0)

        def log(decision, /, severity="INFO", **fields):
            who = sched._by_thread.get(threading.get_ident())
            self.logs.append(f"{who.name if who else '-'}: {decision} "
                             + " ".join(f"{k}={v}" for k, v in fields.items() if k in ("how", "rounds", "files",
                                                                                      "error", "owner")))
            return {"message": decision, **fields}

        swaps = [
            (batch, "firestore_client", lambda project, database="(default)": self.db),
            (holder, "storage_client", lambda project: self.storage),
            (quarantine, "storage_client", lambda project: self.storage),
            (holder, "Warehouse", make_warehouse),
            (batch, "BatchLock", make_lock),
            (holder, "ThreadPoolExecutor", InlineExecutor),
            (lock, "threading", ThreadingShim(sched)),
            (documents, "utcnow", lambda: virtual_utc(sched)),
            (logs, "log", log),
            (lock, "logger", _Logger(self.logs, sched)),
            (lock, "uuid", self.ids),
            (holder, "uuid", self.ids),
        ]
        saved = [(m, n, getattr(m, n)) for m, n, _ in swaps]
        for m, n, v in swaps:
            setattr(m, n, v)
        try:
            yield self
        finally:
            for m, n, v in saved:
                setattr(m, n, v)


def expected_rows(world: World, files: dict[str, bytes], generations: dict[str, int]) -> dict[tuple, dict]:
    """What the table must hold: every file's rows through the real transform, one per natural
    key (the newest (generation, object) wins, as the MERGE's dedup orders them)."""
    rows: dict[tuple, dict] = {}
    for name, data in files.items():
        groups = transform.markets_for_object(name, data, generations[name], None)
        for row in world.bq._flatten(staging.encode(groups)):
            key = world.bq.key(row)
            if key not in rows or (row["source_generation"], row["source_object"]) > (
                    rows[key]["source_generation"], rows[key]["source_object"]):
                rows[key] = row
    return rows


def check(world: World, expected: dict[tuple, dict], problems: list[str]) -> tuple[list[str], str | None]:
    """The invariants of one finished schedule: (problems, why two MERGEs were in flight or None).
    The MERGE overlaps and double writes were checked online, as they happened (fakes.py); a
    schedule cut short because its state was explored before reports those only."""
    sched, bq = world.sched, world.bq
    problems = problems + bq.problems
    why = next((w for w in bq.overlaps if w == "unexplained"), bq.overlaps[0] if bq.overlaps else None)
    for t in sched.tasks:
        if t.error is not None and not isinstance(t.error, TransientError):
            problems.append(f"{t.name} raised a non-transient {type(t.error).__name__}: {t.error}")
    if sched.pruned:
        return problems, why
    table = bq.partitions.get(DAY, {})
    missing = sorted({row["source_object"].rsplit("/", 1)[-1] for key, row in expected.items() if key not in table})
    if missing:
        problems.append(f"not merged: {', '.join(missing)}")
    extra = [k for k in table if k not in expected]
    if extra:
        problems.append(f"{len(extra)} rows in the table that no file holds (duplicates)")
    wrong = [k for k, row in expected.items() if k in table
             and any(table[k][c] != row[c] for c in world.table.staged_columns)]
    if wrong:
        problems.append(f"{len(wrong)} rows differ from their files")
    pending = [p for p in world.db.docs if p.startswith(world.settings.pending_collection + "/")]
    if pending:
        problems.append(f"{len(pending)} markers left queued with nobody to merge them")
    locks = [p for p in world.db.docs if p.startswith(world.settings.lock_collection + "/")]
    if locks:
        problems.append("the lock is left behind")
    return problems, why


def run_one(spec: Spec, dfs: DFS, payload: bytes, bound_steps: int = 3000, every_call: bool = False):
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_SETTLE_SECONDS": "0",
                                                "ODDSBATCH_BUCKET": BUCKET})
    files = {object_name(i): payload for i in range(spec.files)}
    generations = {object_name(i): 1000 + i for i in range(spec.files)}
    sched = Scheduler(dfs.choose, Scenario(crash=spec.crash, lease_pass=spec.lease_pass),
                      lease_seconds=settings.lease_seconds, max_steps=bound_steps, every_call=every_call)
    world = World(spec, sched, settings, files)
    counts: dict[int, int] = {}

    def delivery(i: int, label: str, attempt: int = 1, arrive_at=None, crashable=True) -> Task:
        name = object_name(i)
        event = StorageEvent(event_id=f"e{i + 1}", bucket=BUCKET, name=name, generation=generations[name],
                             size=len(files[name]))
        return Task(sched, label, lambda: batch.handle_event(settings, event), proc=label, arrive_at=arrive_at,
                    crashable=crashable, event=i, attempt=attempt)

    def retry(task: Task, at: float) -> Task:
        """Eventarc's redelivery of the same event (same id), at or after `at`."""
        label = task.name.split("#")[0] + f"#{task.attempt + 1}"
        return sched.add(delivery(task.event, label, task.attempt + 1, arrive_at=at, crashable=False))

    sched.on_retry = retry
    for i in spec.deliveries:  # a repeated event index is a duplicate delivery: e1, e1' ...
        counts[i] = counts.get(i, 0) + 1
        sched.add(delivery(i, f"e{i + 1}" + "'" * (counts[i] - 1)))
    with world.installed():
        problems = sched.run()
        expected = expected_rows(world, files, generations)
    problems, why = check(world, expected, problems)
    return problems, why, sched.trace, world.logs, sched.pruned, sched.crash_points


def explore(spec: Spec, bound: int, max_schedules: int | None = None, stop_at_first_failure: bool = False,
            every_call: bool = False) -> Outcome:
    """Run every schedule of `spec` within `bound` preemptions (DFS, revisited states pruned)."""
    payload = _payload()
    dfs = DFS(bound)
    out = Outcome()
    started = time.monotonic()
    while True:
        dfs.start()
        problems, why, trace, log_lines, pruned, crash_points = run_one(spec, dfs, payload, every_call=every_call)
        out.crash_points.update(crash_points)
        for line in log_lines:
            for what in ("twin delivery coalesces", "its holder died", "stale_takeover (previous"):
                if what in line:
                    out.seen[what] = out.seen.get(what, 0) + 1
        out.schedules += 1
        out.pruned += pruned
        if why:
            out.two_merges += 1
            out.by_reason[why] = out.by_reason.get(why, 0) + 1
        if problems:
            out.failures.append((problems, trace, log_lines))
            if stop_at_first_failure:
                out.complete = False
                break
        if max_schedules and out.schedules >= max_schedules:
            out.complete = not dfs.advance()
            break
        if not dfs.advance():
            break
    out.seconds = time.monotonic() - started
    return out


def describe_failure(failure) -> str:
    problems, trace, log_lines = failure
    return "\n".join(["failing schedule:", *(f"  problem: {p}" for p in problems), *(f"  {t}" for t in trace),
                      "  logs:", *(f"    {line}" for line in log_lines)])


# -- deliberately broken protocols (mutations of the real source) ---------------------------------


@contextmanager
def mutated(owner, name: str, edit):
    """Replace function `name` of module or class `owner` by its own source, edited by
    edit(source) -> source, compiled in the module's globals. Restored on exit."""
    original = getattr(owner, name)
    func = inspect.unwrap(original)
    source = textwrap.dedent(inspect.getsource(func))
    changed = edit(source)
    if changed == source:
        raise AssertionError(f"the mutation of {name} changed nothing")
    namespace: dict = {}
    exec(compile(changed, f"<mutated {name}>", "exec"), func.__globals__, namespace)
    setattr(owner, name, namespace[name])
    try:
        yield
    finally:
        setattr(owner, name, original)


def marker_after_lock(source: str) -> str:
    """handle_event writes the pending marker after its lock attempt instead of before."""
    lines = source.splitlines()
    (add,) = [i for i, line in enumerate(lines) if line.strip().startswith("pending.add(")]
    line = lines.pop(add)
    (tried,) = [i for i, l in enumerate(lines) if l.strip() == "acquired = lock.acquire()"]
    lines.insert(tried + 1, line)
    return "\n".join(lines) + "\n"


def release_without_reread(source: str) -> str:
    """The holder releases and returns without re-reading the queue."""
    old = "if not self.pending.has_any():"
    if source.count(old) != 1:
        raise AssertionError(f"BatchHolder.run no longer has exactly one {old!r}")
    return source.replace(old, "if True:  # mutated: no re-read after the release")
