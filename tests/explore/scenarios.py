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

- holder.time: the scheduler's sleep and clock, so the MERGE fence's polls of a previous
  holder's job (fence.py) sleep on the virtual clock;
- batch.Deadline (scenarios with `deadline`): the invocation's deadline on the virtual clock,
  and BigQuery waits that honour their timeout: a tick can bring the deadline while a holder
  waits on its MERGE (or on a previous holder's), and the real deadline path runs (cancel, a
  best effort the fake ignores as BigQuery may; release; raise; Eventarc's retry).

Settle is 0 (the holder lists at once): the settle only waits and counts markers, and every
order of marker writes against the holder's list is explored anyway.

Besides the table's checks at the end, one invariant is checked online, at every acquisition
of the lock: no other invocation still holds it (it believes so, is alive, and has not been
told otherwise) with a lease that has not passed. A takeover of a live lease, a reclaim from a
live twin, or a create() after someone deleted a live holder's lock breaks it.
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
from oddsbatch.deadline import Deadline
from oddsbatch.errors import TransientError
from oddsbatch.event import StorageEvent
from oddsbatch.tables import table_for_endpoint

from tests.unit.storage_fake import STAGING_BUCKET, FakeStorage

from .fakes import ExploredFirestore, FakeBigQuery, virtual_utc
from .scheduler import DFS, Scenario, Scheduler, Task, ThreadingShim

DAY = "2025-01-21"
BUCKET = "landing"
EVENT_GAME = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


def _payload() -> bytes:
    from pathlib import Path

    data = (Path(__file__).parent.parent / "data" / "event_odds_game_lines_american_synthetic.json").read_bytes()
    return data.replace(b'"a1b2c3d4e5f6g7h8i9j0"', f'"{EVENT_GAME}"'.encode())


DAY2 = "2025-01-22"


def object_name(i: int, day: str = DAY, historical: bool = False) -> str:
    root = "game-lines-history" if historical else "game-lines"
    return f"odds-api/{root}/{day}/{EVENT_GAME}-BOSLAL/20250120_18{i:02d}00-snap-18{i:02d}.json"


@dataclass(frozen=True)
class Spec:
    """A scenario: `files` events of one key, the deliveries (event index per delivery: a repeated
    index is a duplicate delivery of that event), and the faults the scheduler may inject."""

    name: str
    files: int
    deliveries: tuple[int, ...]
    crash: bool = False
    crashes: int = 1  # how many crashes one schedule may have, in all
    crashable_retries: bool = False  # Eventarc's retries may crash too
    lease_pass: bool = False
    deadline: bool = False  # the invocation's deadline on the virtual clock (it can fire in any wait)
    # a short timeout, so the deadline comes within the scheduler's clock ticks (the heartbeat
    # ticks every 2 s): 20 s, of which 2 are the reserve
    timeout_seconds: float = 540.0
    arrivals: dict | None = None  # delivery index -> virtual time it arrives (default: at the start)
    free_ticks: bool = False  # time passing while a job could complete is no preemption (slow BigQuery)
    faults: int = 0  # transient faults per schedule: a service call fails (503) or its answer is lost
    heartbeat: bool = True  # a control switches the heartbeat thread off
    # per file: (game date, -history/ or not); empty: every file live, of DAY
    layout: tuple = ()

    def file_name(self, i: int) -> str:
        day, historical = self.layout[i] if self.layout else (DAY, False)
        return object_name(i, day, historical)

    @property
    def days(self) -> list[str]:
        return sorted({day for day, _ in self.layout}) if self.layout else [DAY]


SCENARIOS = {
    "duplicates": Spec("duplicates", files=3, deliveries=(0, 1, 2, 0)),
    # a holder and a duplicate delivery of its own event: the heartbeat against the twin's wait
    # needs 2 clock delays while the holder waits on BigQuery, so this one runs at a higher bound
    "twin": Spec("twin", files=1, deliveries=(0, 0)),
    # the same while BigQuery is slow: the clock passes freely while the holder waits, so its twin
    # waits a whole heartbeat period and must see the holder's beats (else it would reclaim it)
    "twin_slow": Spec("twin_slow", files=1, deliveries=(0, 0), free_ticks=True),
    "crash": Spec("crash", files=2, deliveries=(0, 1), crash=True),
    "lease": Spec("lease", files=2, deliveries=(0, 1), lease_pass=True),
    # two takers of one stale lock: the lease passes while e1 waits on its MERGE, then two more
    # deliveries of e1 arrive (at t = lease + 1 s, whether the lease passed during e1's MERGE or e1
    # finished long before); a lease that passed is taken over whoever the owner was
    "takers": Spec("takers", files=1, deliveries=(0, 0, 0), lease_pass=True, arrivals={1: 601.0, 2: 601.0}),
    # the deadline fires while a holder waits on BigQuery: it releases with its MERGE in flight
    "deadline": Spec("deadline", files=2, deliveries=(0, 1), deadline=True, timeout_seconds=20.0),
    # a transient fault at any shared call: a 503 before the call, or after it took effect
    "faults": Spec("faults", files=2, deliveries=(0, 1), faults=1),
    # two crashes, retries crashable too: a retry that dies while settling or merging
    "crash2": Spec("crash2", files=1, deliveries=(0,), crash=True, crashes=2, crashable_retries=True),
    # a two-key group: -history/ files of two dates take the endpoint's backfill lock, whose holder
    # merges both dates with ONE MERGE when both markers are queued (backfill.py, groups.py); the
    # late one's event coalesces or holds the backfill lock after the release
    "group": Spec("group", files=2, deliveries=(0, 1), layout=((DAY, True), (DAY2, True))),
    # the same with a live file of the first date, which takes that date's lock: the backfill
    # holder skips a date a live holder has, and every date's MERGE fence and lock hold for each
    # key of the group (26,524 schedules at bound 0: `make prove`)
    "group_live": Spec("group_live", files=3, deliveries=(0, 1, 2),
                       layout=((DAY, True), (DAY2, True), (DAY, False))),
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


class VirtualTime:
    """What holder.py calls on `time`: the scheduler's sleep and clock."""

    def __init__(self, sched: Scheduler):
        self.sched = sched

    def sleep(self, seconds: float) -> None:
        self.sched.sleep(seconds)

    def monotonic(self) -> float:
        return self.sched.now


class World:
    def __init__(self, spec: Spec, sched: Scheduler, settings: Settings, files: dict[str, bytes]):
        self.spec, self.sched, self.settings = spec, sched, settings
        self.locks: list = []  # every BatchLock of the schedule: the online holder check reads them
        self.lease_until: dict[int, float] = {}  # id(lock) -> virtual time its lease passes, per its own writes
        self.problems: list[str] = []
        self.table = table_for_endpoint(settings.endpoint)
        self.db = ExploredFirestore(sched)
        self.bq = FakeBigQuery(sched, self.table, f"{settings.project}.{settings.dataset}.{settings.table}",
                               timeouts=spec.deadline)
        self.storage = FakeStorage(files)
        self.bq.staging = self.storage.staged
        self.logs: list[str] = []
        self.ids = DeterministicIds(sched)
        sched.world_state = lambda: (self.db.shared_state(), self.bq.shared_state())

    def holder_check(self, taker, how: str) -> None:
        """At an acquisition: nobody else still holds the key with a live lease (see the module doc)."""
        crashed = {t.proc for t in self.sched.tasks if t.state == "crashed"}
        for other in self.locks:
            if other is taker or other.key != taker.key:  # one holder per key; a group holds several keys
                continue
            if not other._held or other._lost or other.proc in crashed:
                continue
            until = self.lease_until.get(id(other))
            if until is not None and until > self.sched.now:
                self.problems.append(f"two holders of the key at once: {taker.proc} acquired ({how}) at "
                                      f"t={self.sched.now:g}s while {other.proc} held it with a lease until t={until:g}s")

    @contextmanager
    def installed(self):
        sched, real_lock, real_warehouse = self.sched, lock.BatchLock, holder.Warehouse
        from oddsbatch import backfill
        heartbeat = self.spec.heartbeat

        world = self

        class ObservedLock(real_lock):
            """The real BatchLock, with what the online holder check needs: when its lease passes
            (as this holder last wrote it) and a check at each acquisition."""

            def _won(self, how, update_time, previous):
                world.holder_check(self, how)
                world.lease_until[id(self)] = sched.now + self.lease.total_seconds()
                return super()._won(how, update_time, previous)

            def renew(self):
                super().renew()
                world.lease_until[id(self)] = sched.now + self.lease.total_seconds()

        def make_lock(*args, **kwargs):
            kwargs["sleep"] = sched.sleep
            if not heartbeat:
                kwargs["beat_in_background"] = False
            made = ObservedLock(*args, **kwargs)
            made.proc = sched.me().proc
            self.locks.append(made)
            return made

        def make_warehouse(settings, spec, deadline=None):
            return real_warehouse(settings, spec, client=self.bq, sleep=sched.sleep, deadline=deadline,
                                  jitter=lambda: 1.0)

        def log(decision, /, severity="INFO", **fields):
            who = sched._by_thread.get(threading.get_ident())
            self.logs.append(f"{who.name if who else '-'}: {decision} "
                             + " ".join(f"{k}={v}" for k, v in fields.items() if k in ("how", "rounds", "files",
                                                                                      "error", "owner", "game_dates")))
            return {"message": decision, **fields}

        swaps = [
            (batch, "firestore_client", lambda project, database="(default)": self.db),
            (holder, "storage_client", lambda project: self.storage),
            (quarantine, "storage_client", lambda project: self.storage),
            (holder, "Warehouse", make_warehouse),
            (batch, "BatchLock", make_lock),
            (backfill, "BatchLock", make_lock),  # the backfill holder's date locks
            (backfill, "time", VirtualTime(sched)),
            (holder, "ThreadPoolExecutor", InlineExecutor),
            (lock, "threading", ThreadingShim(sched)),
            (documents, "utcnow", lambda: virtual_utc(sched)),
            (logs, "log", log),
            (lock, "logger", _Logger(self.logs, sched)),
            (lock, "uuid", self.ids),
            (holder, "uuid", self.ids),
            (holder, "time", VirtualTime(sched)),
        ]
        if self.spec.deadline:
            swaps.append((batch, "Deadline", lambda seconds: Deadline(seconds, clock=lambda: sched.now)))
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
    problems = problems + bq.problems + world.problems
    why = next((w for w in bq.overlaps if w == "unexplained"), bq.overlaps[0] if bq.overlaps else None)
    for t in sched.tasks:
        if t.error is not None and not isinstance(t.error, TransientError):
            problems.append(f"{t.name} raised a non-transient {type(t.error).__name__}: {t.error}")
    if sched.pruned:
        return problems, why
    table = {k: row for day in world.spec.days for k, row in bq.partitions.get(day, {}).items()}
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
                                                "ODDSBATCH_BUCKET": BUCKET, "ODDSBATCH_STAGING_BUCKET": STAGING_BUCKET,
                                                "ODDSBATCH_TIMEOUT_SECONDS": str(spec.timeout_seconds)})
    files = {spec.file_name(i): payload for i in range(spec.files)}
    generations = {spec.file_name(i): 1000 + i for i in range(spec.files)}
    sched = Scheduler(dfs.choose, Scenario(crash=spec.crash, crashes=spec.crashes, lease_pass=spec.lease_pass,
                                            deadline=spec.deadline, free_ticks=spec.free_ticks,
                                            faults=spec.faults),
                      lease_seconds=settings.lease_seconds, max_steps=bound_steps, every_call=every_call)
    world = World(spec, sched, settings, files)
    counts: dict[int, int] = {}

    def delivery(i: int, label: str, attempt: int = 1, arrive_at=None, crashable=True) -> Task:
        name = spec.file_name(i)
        event = StorageEvent(event_id=f"e{i + 1}", bucket=BUCKET, name=name, generation=generations[name],
                             size=len(files[name]))
        return Task(sched, label, lambda: batch.handle_event(settings, event), proc=label, arrive_at=arrive_at,
                    crashable=crashable, event=i, attempt=attempt)

    def retry(task: Task, at: float) -> Task:
        """Eventarc's redelivery of the same event (same id), at or after `at`."""
        label = task.name.split("#")[0] + f"#{task.attempt + 1}"
        return sched.add(delivery(task.event, label, task.attempt + 1, arrive_at=at,
                                  crashable=spec.crashable_retries))

    sched.on_retry = retry
    for n, i in enumerate(spec.deliveries):  # a repeated event index is a duplicate delivery: e1, e1' ...
        counts[i] = counts.get(i, 0) + 1
        sched.add(delivery(i, f"e{i + 1}" + "'" * (counts[i] - 1), arrive_at=(spec.arrivals or {}).get(n)))
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
            if ": merged " in line and "game_dates=" in line and line.split("game_dates=", 1)[1].count(",") >= 1:
                out.seen["multi_date_merge"] = out.seen.get("multi_date_merge", 0) + 1  # one MERGE, several dates
            for what in ("twin delivery coalesces", "its holder died", "stale_takeover (previous",
                         "unfinished at the deadline", "fence_waiting", "fence_burned", "fenced"):
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
    old = "late = [held for held in self.held if held.pending.has_any()]"
    if source.count(old) != 1:
        raise AssertionError(f"BatchHolder.run no longer has exactly one {old!r}")
    return source.replace(old, "late = []  # mutated: no re-read after the release")


def backfill_release_without_reread(source: str) -> str:
    """The backfill holder releases the backfill lock and returns without re-reading the queue."""
    return _replace_once(source, "pending = pending_ids_by_key(self.db, self.settings)",
                         "pending = {}  # mutated: no re-read after the release", "BackfillHolder.run")


def _replace_once(source: str, old: str, new: str, what: str) -> str:
    if source.count(old) != 1:
        raise AssertionError(f"{what}: the source no longer has exactly one {old!r}")
    return source.replace(old, new)


def blind_takeover(source: str) -> str:
    """BatchLock.acquire takes a stale lock over with a blind write (no `last_update_time`)."""
    import re

    changed, n = re.subn(r",\s*option=last_update\(snapshot\.update_time\)\)", ")", source)
    if n != 1:
        raise AssertionError("BatchLock.acquire no longer has exactly one conditional takeover")
    return changed


def release_without_precondition(source: str) -> str:
    """BatchLock.release deletes the lock whoever wrote it last."""
    return _replace_once(source, "self.ref.delete(option=last_update(self._update_time))", "self.ref.delete()",
                         "BatchLock.release")


def silent_heartbeat(source: str) -> str:
    """BatchLock.beat writes nothing: the heartbeat thread runs but the lock looks silent."""
    return _replace_once(source, 'self._write({"heartbeat_at": documents.utcnow()})', "return None",
                         "BatchLock.beat")


def record_without_settling(source: str) -> str:
    """MergeFence.record writes the new job id without settling the one recorded before."""
    return _replace_once(source, "self.settle(self._job_id)", "pass", "MergeFence.record")


def merge_without_record(source: str) -> str:
    """Warehouse.merge inserts its MERGE jobs without recording them in the fence first."""
    return _replace_once(source, "before_insert=record if fences else None", "before_insert=None",
                         "Warehouse.merge")
