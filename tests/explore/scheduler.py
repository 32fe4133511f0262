"""A deterministic scheduler for the real protocol code, and a DFS over its choices.

Stateless model checking in the manner of CHESS (Musuvathi et al.) and loom: every
invocation of `handle_event` runs its real code in its own Python thread, but only one
thread runs at a time. A thread runs until its next *switch point* (every Firestore and
BigQuery call of the fakes calls `point()`, every blocking wait calls `block()`), then hands
control back to the controller, which picks the next action from the options of that
state:

- ("run", task): let one enabled task run to its next switch point (or start it: an event
  arrives);
- ("complete", job): a BigQuery job finishes server-side (a load applies, a MERGE commits or
  fails with a serialization conflict). Jobs run on the server: a job whose invocation
  crashed still finishes;
- ("tick",): virtual time passes up to the next timer (a sleeping task wakes, a retry
  arrives); allowed only when no started task is enabled, i.e. every live invocation waits
  on BigQuery, sleeps or is blocked (Firestore calls take no virtual time);
- ("fail", task) / ("lose", task): the service call the running task stands at fails with a
  503 (when the scenario allows transient faults): "fail" before it has any effect, "lose"
  after it took effect (the answer is lost on the way back: a write that happened, reported as
  an error);
- ("crash", task): the invocation dies at this point as with os._exit (once per schedule,
  when the scenario asks for it): it never runs again, no finally block of it runs during
  the schedule, its heartbeat thread dies with it, its BigQuery jobs go on, and Eventarc's
  retry of the same event id arrives at least 10 s later;
- ("lease",): the holder's lease passes while it waits on BigQuery (once per schedule, when
  the scenario asks for it): the clock jumps by the lease;
- ("deadline",): an invocation's deadline comes while it waits on a BigQuery job (once per
  schedule, when the scenario asks for it): the clock jumps to that wait's timeout, which the
  code under test derived from its deadline; the real deadline path runs from there.

The DFS re-runs the scenario from scratch for every schedule, replaying a prefix of choices
and branching at the deepest decision with an untried option. The search is bounded the
CHESS way: a *preemption* (switching away from a task that could go on, completing a job
or letting time pass while one could) costs 1, everything else is free, and schedules
using more than `bound` preemptions are not explored. A replay that meets different
options than its recording raises (the code under test must be deterministic given the
choices).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Callable

# Calls whose effect can happen while their answer is lost (the first word of a switch point's label).
LOSABLE = ("create", "update", "delete", "set", "commit", "MERGE", "placeholder")

# Eventarc redelivers a failed event after at least 10 s (exponential backoff, 10 s to 600 s):
# https://cloud.google.com/eventarc/docs/retry-events
RETRY_DELAY_SECONDS = 10.0


class Killed(BaseException):
    """Raised in a task the scheduler stopped (crashed, or left over at the end of a schedule).
    A BaseException, so `except Exception` in the code under test does not swallow it."""


class Nondeterminism(AssertionError):
    """A replayed schedule met other options than the recorded one."""


class Pruned(Exception):
    """This state was already explored with no more preemptions spent: its futures are known."""


class Task:
    def __init__(self, sched: "Scheduler", name: str, fn: Callable[[], object], proc: str, daemon: bool = False,
                 arrive_at: float | None = None, crashable: bool = False, event=None, attempt: int = 1):
        self.sched, self.name, self.fn, self.proc, self.daemon = sched, name, fn, proc, daemon
        self.arrive_at, self.crashable, self.event, self.attempt = arrive_at, crashable, event, attempt
        self.go = threading.Semaphore(0)
        self.pending = "arrive"  # label of the point it stands at
        self.cond: Callable[[], bool] | None = None
        self.wake_at: float | None = arrive_at
        self.state = "new"  # new | live | done | crashed
        self.started = False
        self.killed = False
        self.result = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.waiting_job = None  # the BigQuery job it waits on, if any

    def enabled(self, now: float) -> bool:
        if self.state in ("done", "crashed"):
            return False
        if self.cond is not None and self.cond():
            return True
        if self.wake_at is not None:
            return self.wake_at <= now
        return self.cond is None

    def _main(self) -> None:
        self.go.acquire()
        try:
            if self.killed:
                raise Killed()
            self.result = self.fn()
            self.sched.point("end", "answers")  # a crash here: all done, but the answer never left
        except Killed:
            pass
        except BaseException as exc:  # noqa: BLE001 - the invocation raised: Eventarc retries it
            self.error = exc
        finally:
            if not self.killed:
                self.state = "done"
            self.sched._back.release()

    def __repr__(self) -> str:
        return f"Task({self.name}, {self.state}, at {self.pending})"


@dataclass
class Job:
    """A BigQuery job running server-side; `finish()` applies its effect when the scheduler says so."""

    name: str
    finish: Callable[[], None]
    kind: str
    owner: str
    done: bool = False


@dataclass
class Scenario:
    crash: bool = False  # invocations may crash (`crashes` times in all), at any switch point
    crashes: int = 1
    lease_pass: bool = False  # the lease may pass once, while a holder waits on BigQuery
    deadline: bool = False  # a deadline may come once, while an invocation waits on a BigQuery job
    free_ticks: bool = False  # letting time pass costs no preemption (BigQuery slower than the clock)
    faults: int = 0  # transient faults of service calls per schedule (a 503, or an answer lost)
    max_retries: int = 3  # Eventarc retries of one event that raised (transient errors)


class Scheduler:
    def __init__(self, choose: Callable[[list], tuple], scenario: Scenario, lease_seconds: float,
                 max_steps: int = 3000, max_ticks: int = 40, every_call: bool = False):
        self.choose = choose
        self.scenario = scenario
        self.lease_seconds = lease_seconds
        self.max_steps, self.max_ticks = max_steps, max_ticks
        self.now = 0.0
        self.tasks: list[Task] = []
        self.jobs: list[Job] = []
        self.current: Task | None = None
        self._back = threading.Semaphore(0)
        self._by_thread: dict[int, Task] = {}
        self.step = 0
        self.ticks = 0
        self.trace: list[str] = []
        self.crashes_left = scenario.crashes if scenario.crash else 0
        self.leases_left = 1 if scenario.lease_pass else 0
        self.deadlines_left = 1 if scenario.deadline else 0
        self.faults_left = scenario.faults
        self.lease_steps: list[tuple[int, bool]] = []  # (step, a MERGE was in flight)
        self.crashed: list[tuple[int, str, bool]] = []  # (step, task, it waited on a MERGE)
        self.crash_points: list[tuple[str, str]] = []
        self.on_retry: Callable[[Task, float], Task] | None = None
        self.finished = False
        self.every_call = every_call
        self.histories: dict[str, int] = {}  # process -> running hash of what its calls saw, in order
        self.world_state: Callable[[], tuple] | None = None  # the shared services' state (fakes)
        self.lease_in_merge = False  # a lease passed while a MERGE was in flight
        self.crash_in_merge = False  # an invocation died waiting on its MERGE
        self.pruned = False

    # -- the task side ---------------------------------------------------------------------------

    def me(self) -> Task:
        return self._by_thread[threading.get_ident()]

    def take_fault(self) -> str | None:
        """The fault the controller chose for the call the running task is making (once)."""
        task = self._by_thread.get(threading.get_ident())
        fault = getattr(task, "fault", None) if task is not None else None
        if fault:
            task.fault = None
        return fault

    def note(self, entry: tuple) -> None:
        """Record what a call of the running task saw (the service state it read, the clock).
        The code is deterministic, so a process's local state (both its threads) is a function of
        this ordered record: it stands for the local state in the state fingerprint."""
        task = self._by_thread.get(threading.get_ident())
        if task is not None:
            self.histories[task.proc] = hash((self.histories.get(task.proc, 0), entry, self.now))

    def fingerprint(self) -> tuple:
        """Everything the future of this schedule depends on (used to prune revisited states)."""
        tasks = tuple((t.name, t.proc, t.state, t.pending, t.wake_at, t.attempt, t.enabled(self.now),
                       t.waiting_job.name if t.waiting_job else None, getattr(t, "retried", False),
                       type(t.error).__name__ if t.error is not None else None)
                      for t in self.tasks)
        jobs = tuple((j.name, j.done) for j in self.jobs)
        return (self.current.name if self.current else None, self.now, self.ticks, self.crashes_left,
                self.leases_left, self.deadlines_left, self.faults_left, self.lease_in_merge, self.crash_in_merge, tasks, jobs,
                tuple(sorted(self.histories.items())), self.world_state() if self.world_state else None)

    def _handoff(self, task: Task) -> None:
        self._back.release()
        task.go.acquire()
        if task.killed:
            raise Killed()

    def point(self, kind: str, label: str, shared: bool = True) -> None:
        """A switch point before a call to a service: the controller decides who goes on.

        A call on an object no other invocation reads (`shared=False`: the round's own staging
        table and load job, its run record, the ledger and ingest log nobody in the protocol
        reads) commutes with every step of every other task, so a switch right before it is
        equivalent to a switch right after it (partial-order reduction): it is traced, not
        branched on, unless `every_call` is set (`make prove`)."""
        task = self._by_thread.get(threading.get_ident())
        if task is None:  # not a scheduled thread (setup code of the test): no switching
            return
        if task.killed:
            raise Killed()
        if kind == "end" and task.daemon:
            return
        if not shared and not self.every_call:
            return
        task.pending = f"{kind}:{label}"
        self._handoff(task)

    def block(self, cond: Callable[[], bool] | None, wake_at: float | None, label: str) -> None:
        """Wait until cond() holds or virtual time reaches wake_at."""
        task = self.me()
        if task.killed:
            raise Killed()
        task.pending, task.cond, task.wake_at = f"resume:{label}", cond, wake_at
        if cond is None and wake_at is None:
            raise AssertionError("block() needs a condition or a wake-up time")
        try:
            self._handoff(task)
        finally:
            task.cond = task.wake_at = None

    def sleep(self, seconds: float) -> None:
        self.block(None, self.now + max(0.0, float(seconds)), f"sleep {seconds:g}s")

    def wait_job(self, job: Job, timeout: float | None = None) -> None:
        """Wait until the job is done, or `timeout` virtual seconds passed (the caller tells which)."""
        task = self.me()
        task.waiting_job = job
        try:
            self.block(lambda: job.done, None if timeout is None else self.now + timeout, f"wait {job.name}")
        finally:
            task.waiting_job = None

    def spawn(self, name: str, fn: Callable[[], object], daemon: bool = True) -> Task:
        """A thread of the current invocation (the heartbeat): runs at once up to its first switch
        point (its first steps touch nothing shared), then the spawner goes on."""
        parent = self.me()
        child = Task(self, name, fn, proc=parent.proc, daemon=daemon)
        self.tasks.append(child)
        parent.pending = f"spawn:{name}"
        self._spawned = child
        self._handoff(parent)
        return child

    # -- the controller side ---------------------------------------------------------------------

    def add(self, task: Task) -> Task:
        self.tasks.append(task)
        return task

    def _run(self, task: Task) -> None:
        if not task.started:
            task.started, task.state = True, "live"
            task.thread = threading.Thread(target=task._main, name=f"explore-{task.name}", daemon=True)
            task.thread.start()
            self._by_thread[task.thread.ident] = task
        self.current = task
        task.go.release()
        self._back.acquire()
        while task.pending.startswith("spawn:") and task.state == "live":
            child, self._spawned = self._spawned, None
            task.pending = "resume:spawned"
            self._run(child)
            self.current = task
            task.go.release()
            self._back.acquire()

    def _job_timeouts(self) -> list[float]:
        """When the waits on unfinished BigQuery jobs time out (the waiters' deadlines)."""
        return [t.wake_at for t in self.tasks if t.state == "live" and t.waiting_job is not None
                and not t.waiting_job.done and t.wake_at is not None and t.wake_at > self.now]

    def _running_merge(self, task: Task) -> bool:
        return task.waiting_job is not None and task.waiting_job.kind == "merge"

    def options(self) -> list[tuple[tuple, int]]:
        now, cur = self.now, self.current
        enabled = [t for t in self.tasks if t.enabled(now)]
        cur_on = cur is not None and cur in enabled
        preempt = 1 if cur_on else 0
        opts: list[tuple[tuple, int]] = []
        if cur_on:
            opts.append((("run", cur.name), 0))
        opts += [(("run", t.name), preempt) for t in enabled if t is not cur]
        opts += [(("complete", j.name), preempt) for j in self.jobs if not j.done]
        if self.faults_left and cur_on and cur.started and cur.pending.startswith(("firestore:", "bigquery:")):
            opts.append((("fail", cur.name), 0))
            if cur.pending.split(":", 1)[1].split(" ")[0] in LOSABLE:
                opts.append((("lose", cur.name), 0))
        if self.crashes_left:  # before the call it stands at, woken before its next call, or waiting on BigQuery
            if cur_on and cur.crashable and cur.started:
                opts.append((("crash", cur.name), 0))
            opts += [(("crash", t.name), 0) for t in self.tasks
                     if t.crashable and t.state == "live" and t is not cur
                     and (t.waiting_job is not None or (t in enabled and t.pending.startswith("resume:")))]
        time_can_pass = not any(t.started for t in enabled)
        if time_can_pass:
            timers = [t.wake_at for t in self.tasks if t.state in ("new", "live") and t.wake_at is not None
                      and t.wake_at > now]
            if timers and self.ticks < self.max_ticks:
                opts.append((("tick",), 1 if opts and not self.scenario.free_ticks else 0))
            if self.leases_left and any(not j.done for j in self.jobs):
                opts.append((("lease",), 0))
            if self.deadlines_left and self._job_timeouts():
                opts.append((("deadline",), 0))
        return opts

    def apply(self, action: tuple) -> None:
        kind = action[0]
        if kind == "run":
            task = self._task(action[1])
            before = task.pending
            self._run(task)
            if before.startswith(("arrive", "resume")) and task.state == "live" \
                    and task.pending.startswith(("firestore:", "bigquery:")):
                # Arriving or waking runs only local code up to the next call: that call is this
                # step's (one decision per service call; no clock tick can come in between).
                before = f"{before} -> {task.pending}"
                self._run(task)
            self.trace.append(f"{self.step}: run {task.name} [{before}]")
        elif kind == "complete":
            job = next(j for j in self.jobs if j.name == action[1])
            self.trace.append(f"{self.step}: bigquery completes {job.name}")
            job.finish()
            job.done = True
        elif kind == "tick":
            self.now = min(t.wake_at for t in self.tasks if t.state in ("new", "live") and t.wake_at is not None
                           and t.wake_at > self.now)
            self.ticks += 1
            self.trace.append(f"{self.step}: time passes to t={self.now:g}s")
        elif kind == "lease":
            self.leases_left -= 1
            in_flight = any(not j.done and j.kind == "merge" for j in self.jobs)
            self.lease_steps.append((self.step, in_flight))
            self.lease_in_merge = self.lease_in_merge or in_flight
            self.now += self.lease_seconds + 1
            self.trace.append(f"{self.step}: the lease passes (t={self.now:g}s) while a holder waits on BigQuery")
        elif kind in ("fail", "lose"):
            task = self._task(action[1])
            self.faults_left -= 1
            task.fault = kind
            before = task.pending
            self._run(task)
            self.trace.append(f"{self.step}: {task.name}'s call {'FAILS (503)' if kind == 'fail' else 'takes effect, its ANSWER IS LOST (503)'} [{before}]")
        elif kind == "deadline":
            self.deadlines_left -= 1
            self.now = min(self._job_timeouts())
            self.trace.append(f"{self.step}: the deadline comes (t={self.now:g}s) while an invocation waits on BigQuery")
        elif kind == "crash":
            task = self._task(action[1])
            self.crashes_left -= 1
            self.crashed.append((self.step, task.name, self._running_merge(task)))
            self.crash_points.append((task.name, task.pending))
            self.crash_in_merge = self.crash_in_merge or self._running_merge(task)
            self.trace.append(f"{self.step}: CRASH {task.name} at [{task.pending}]")
            for t in self.tasks:
                if t.proc == task.proc and t.state in ("new", "live"):
                    t.state = "crashed"
            self._retry(task)
        else:  # pragma: no cover
            raise AssertionError(action)
        self.step += 1

    def _retry(self, task: Task) -> None:
        if self.on_retry is not None:
            retry = self.on_retry(task, self.now + RETRY_DELAY_SECONDS)
            self.trace.append(f"{self.step}: Eventarc will retry {task.name} as {retry.name} at t>={retry.arrive_at:g}s")

    def _task(self, name: str) -> Task:
        (task,) = [t for t in self.tasks if t.name == name]  # names are unique within a schedule
        return task

    def run(self) -> list[str]:
        """Run one schedule to its end; returns the problems the scheduler itself found."""
        problems: list[str] = []
        try:
            while True:
                for t in self.tasks:  # an invocation that raised is retried by Eventarc
                    if t.state == "done" and t.error is not None and not getattr(t, "retried", False):
                        t.retried = True
                        self.trace.append(f"{self.step}: {t.name} raised {type(t.error).__name__}: {str(t.error)[:120]}")
                        if t.attempt > self.scenario.max_retries:
                            problems.append(f"{t.name} still failing after {t.attempt} attempts: {t.error!r}")
                        else:
                            self._retry(t)
                mains_left = [t for t in self.tasks if not t.daemon and t.state in ("new", "live")]
                jobs_left = [j for j in self.jobs if not j.done]
                if not mains_left and not jobs_left:
                    for t in self.tasks:
                        if t.daemon and t.state == "live":
                            problems.append(f"{t.name} still runs after its invocation answered")
                    break
                if self.step >= self.max_steps:
                    problems.append(f"no end after {self.step} steps")
                    break
                opts = self.options()
                if not opts:
                    problems.append("deadlock: " + ", ".join(repr(t) for t in mains_left))
                    break
                self.apply(self.choose(opts, self.fingerprint))
        except Pruned:
            self.pruned = True
        finally:
            self.finished = True
            self._reap()
        return problems

    def _reap(self) -> None:
        """Stop every thread still parked at a switch point (crashed ones included): Killed
        unwinds it. Its finally blocks touch only this schedule's throwaway world."""
        for t in self.tasks:
            if t.thread is not None and t.thread.is_alive():
                t.killed = True
                t.go.release()
                self._back.acquire()
                t.thread.join()


# -- stand-ins for the threading module as lock.py uses it -------------------------------------


class SchedLock:
    def __init__(self, sched: Scheduler):
        self.sched, self.owner = sched, None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.owner is not None:
            if self.sched.finished:
                raise Killed()
            self.sched.block(lambda: self.owner is None, None, "mutex")
        self.owner = self.sched.me()
        return True

    def release(self) -> None:
        self.owner = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class SchedEvent:
    def __init__(self, sched: Scheduler):
        self.sched, self.flag = sched, False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        if not self.flag:
            self.sched.block(lambda: self.flag, None if timeout is None else self.sched.now + timeout, "event")
        return self.flag


class SchedThread:
    def __init__(self, sched: Scheduler, target, name: str = "", daemon: bool = True, **_):
        self.sched, self.target, self.name, self.daemon = sched, target, name, daemon
        self.task: Task | None = None

    def start(self) -> None:
        parent = self.sched.me()
        beats = sum(1 for t in self.sched.tasks if t.daemon and t.proc == parent.proc)
        self.task = self.sched.spawn(f"{parent.name}.heartbeat{beats + 1}", self.target, daemon=True)
        self.task.thread_obj = self

    def join(self, timeout: float | None = None) -> None:
        task = self.task
        if task is None or task.state in ("done", "crashed"):
            return
        self.sched.block(lambda: task.state in ("done", "crashed"),
                         None if timeout is None else self.sched.now + timeout, "join heartbeat")

    def is_alive(self) -> bool:
        return self.task is not None and self.task.state in ("new", "live")


class ThreadingShim:
    """What lock.py calls on `threading`: Lock, Event, Thread, current_thread."""

    def __init__(self, sched: Scheduler):
        self.sched = sched

    def Lock(self):  # noqa: N802 - the module's own names
        return SchedLock(self.sched)

    def Event(self):  # noqa: N802
        return SchedEvent(self.sched)

    def Thread(self, target=None, name="", daemon=True, **kwargs):  # noqa: N802
        return SchedThread(self.sched, target, name, daemon)

    def current_thread(self):
        task = self.sched.me()
        return getattr(task, "thread_obj", task)


# -- the search ----------------------------------------------------------------------------------


@dataclass
class _Decision:
    labels: list
    costs: list
    index: int
    used: int  # preemptions spent before this decision


@dataclass
class DFS:
    """Depth-first search over the schedules, bounded by `bound` preemptions."""

    bound: int
    prune: bool = True  # skip states already explored with no more preemptions spent
    path: list = field(default_factory=list)
    depth: int = 0
    used: int = 0
    visited: dict = field(default_factory=dict)

    def start(self) -> None:
        self.depth = self.used = 0

    def choose(self, options: list[tuple[tuple, int]], fingerprint: Callable[[], tuple] | None = None) -> tuple:
        labels = [o[0] for o in options]
        costs = [o[1] for o in options]
        if self.depth < len(self.path):
            decision = self.path[self.depth]
            if decision.labels != labels:
                raise Nondeterminism(f"decision {self.depth}: recorded {decision.labels}, met {labels}")
        else:
            if self.prune and fingerprint is not None:
                key = hashlib.blake2b(repr(fingerprint()).encode(), digest_size=16).digest()
                seen = self.visited.get(key)
                if seen is not None and seen <= self.used:
                    raise Pruned()
                self.visited[key] = self.used
            fits = [i for i, c in enumerate(costs) if self.used + c <= self.bound]
            decision = _Decision(labels, costs, fits[0], self.used)
            self.path.append(decision)
        self.depth += 1
        self.used += decision.costs[decision.index]
        return decision.labels[decision.index]

    def advance(self) -> bool:
        """Move to the next schedule; False when every one within the bound was explored."""
        del self.path[self.depth:]
        while self.path:
            d = self.path[-1]
            for j in range(d.index + 1, len(d.labels)):
                if d.used + d.costs[j] <= self.bound:
                    d.index = j
                    return True
            self.path.pop()
        return False
