"""A poison file never blocks its key: the holder's isolation paths, with in-memory fakes.

The same paths run against the emulators in tests/integration/test_poison_files.py.
"""

from __future__ import annotations

import math
import random

import pytest
from google.api_core.exceptions import BadRequest, Forbidden, NotFound

from oddsbatch import batch, holder, quarantine, transform
from oddsbatch.config import Settings
from oddsbatch.errors import RejectedData, TerminalError, TransientError, classify, is_rejected_data
from oddsbatch.event import StorageEvent
from oddsbatch.pending import PendingWork

from .storage_fake import staged_text
from .test_batch import GOOD, KEY, FakeWarehouse, add_file, make_holder, name, world  # noqa: F401 - fixture

# ------------------------------------------------------------------------------------------
# find_rejected: bisection over a load that refuses any subset holding a bad item.


def counting_load(bad: set):
    calls = []

    def load(subset):
        calls.append(list(subset))
        if bad & set(subset):
            raise RejectedData(f"refused {sorted(bad & set(subset))}")

    return load, calls


@pytest.mark.parametrize("n, bad", [(1, {0}), (2, {1}), (9, {2, 6}), (64, {0, 63}), (100, set(range(0, 100, 17))),
                                    (10, set(range(10)))])
def test_find_rejected_returns_exactly_the_refused_items_in_few_loads(n, bad):
    items = list(range(n))
    load, calls = counting_load(bad)
    with pytest.raises(RejectedData) as whole:
        load(items)
    calls.clear()
    found = holder.find_rejected(items, load, rejection=whole.value)
    assert sorted(i for i, _ in found) == sorted(bad)
    assert all(str(i) in reason for i, reason in found if len(bad) == 1)
    if len(bad) < n:  # a bisection, not a load per file
        assert len(calls) <= 2 * len(bad) * max(1, math.ceil(math.log2(n))), len(calls)


def test_find_rejected_of_a_clean_list_loads_it_once():
    load, calls = counting_load(set())
    assert holder.find_rejected(list(range(50)), load) == [] and len(calls) == 1


def test_find_rejected_random_sets():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 40)
        bad = {i for i in range(n) if rng.random() < 0.1} or {rng.randrange(n)}
        load, _ = counting_load(bad)
        assert sorted(i for i, _ in holder.find_rejected(list(range(n)), load)) == sorted(bad)


# ------------------------------------------------------------------------------------------
# The holder.


class RefusingWarehouse(FakeWarehouse):
    """A load that refuses any payload holding one of the marked byte strings (a value the
    transform let through), as BigQuery's load job refuses a row."""

    def __init__(self, refuse: bytes):
        super().__init__()
        self.refuse, self.loads, self.loaded = refuse, 0, b""

    def stage(self, run_id, uris, created=False, step="load"):
        data = staged_text(self.staging, uris)  # BigQuery reads the staging objects, never this process
        self.loads += 1
        if self.refuse in data:
            raise RejectedData("400 Error while reading data, error message: JSON table encountered too many errors")
        self.loaded = data
        return super().stage(run_id, uris, created)


def test_a_file_whose_rows_the_load_refuses_is_quarantined_alone(world, monkeypatch):
    wh = RefusingWarehouse(b"POISONED")
    h, pending = make_holder(world, "event-1", wh)
    for i in range(8):
        add_file(world, pending, i, GOOD.replace(b'"draftkings"', b'"POISONED"') if i == 5 else GOOD)
    assert h.run() == "merged"
    assert [n for n, _ in world.quarantined] == [name(5)]
    assert "load refused its rows" in world.quarantined[0][1]
    assert wh.merges == 1 and b"POISONED" not in wh.loaded and wh.loaded
    assert 2 < wh.loads < 8 + 2  # the first load, the halves of the URIs, the good files' load
    assert not pending.has_any()
    assert world.staged == {}  # every staging object deleted after the MERGE, the refused file's too


def test_any_exception_while_transforming_a_file_quarantines_it_and_the_batch_goes_on(world, monkeypatch):
    original = transform.staged_for_object  # what reading stages a whole file with

    def flaky(object_name, data, generation, created=None):
        if object_name == name(2):
            raise ZeroDivisionError("a bug the transform has for this file")
        return original(object_name, data, generation, created)

    monkeypatch.setattr(transform, "staged_for_object", flaky)
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    for i in range(4):
        add_file(world, pending, i)
    assert h.run() == "merged"
    assert world.quarantined == [(name(2), "could not transform: ZeroDivisionError: a bug the transform has for this file")]
    assert wh.merges == 1 and not pending.has_any()


def test_a_failing_quarantine_copy_is_transient_and_keeps_only_that_file_queued(world, monkeypatch):
    def copy_fails(settings, bucket, object_name, generation, reason):
        raise TransientError("quarantine copy of x failed: 403 Forbidden")

    monkeypatch.setattr(holder, "quarantine", copy_fails)
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    for i in range(3):
        add_file(world, pending, i, b"{not json" if i == 1 else GOOD)
    with pytest.raises(TransientError, match="quarantine copy"):
        h.run()
    assert wh.merges == 1  # the good files merged first
    assert [m.name for m in pending.list(limit=10)] == [name(1)]


def test_quarantine_copy_errors_are_transient_unless_the_source_is_gone(monkeypatch):
    class Blob:
        def __init__(self, exists):
            self._exists = exists

        def exists(self):
            return self._exists

    class Bucket:
        def __init__(self, name, exists, error):
            self.name, self._exists, self.error = name, exists, error

        def blob(self, object_name, generation=None):
            return Blob(self._exists)

        def copy_blob(self, *a, **k):
            raise self.error

    for error, source_exists, transient in [(NotFound("bucket q"), True, True), (Forbidden("no role"), True, True),
                                            (NotFound("object"), False, False)]:
        client = type("C", (), {"bucket": lambda self, n, e=error, s=source_exists: Bucket(n, s, e)})()
        monkeypatch.setattr(quarantine, "storage_client", lambda project, c=client: c)
        settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_QUARANTINE_BUCKET": "q"})
        if transient:
            with pytest.raises(TransientError, match="quarantine copy of gs://b/o to gs://q/ failed"):
                quarantine.quarantine(settings, "b", "o", 1, "bad")
        else:
            assert quarantine.quarantine(settings, "b", "o", 1, "bad") is None  # the source is gone: done


def test_a_terminal_error_is_acknowledged_once_the_marker_is_queued(world, monkeypatch):
    def misconfigured(self):
        raise TerminalError("NotFound: 404 Dataset p:odds_api was not found", fix="run terraform apply")

    monkeypatch.setattr(holder.BatchHolder, "run", misconfigured)
    world.objects[name(0)] = GOOD
    event = StorageEvent("event-0", "bucket", name(0), 1000)
    assert batch.handle_event(world.settings, event) == "failed_terminal"
    pending = PendingWork(world.db, world.settings.pending_collection, KEY, world.settings.ttl)
    assert [m.name for m in pending.list(limit=10)] == [name(0)]  # queued for the sweep or reconcile


def test_a_terminal_error_before_the_marker_is_written_is_raised(world, monkeypatch):
    def refused(*a, **k):
        raise Forbidden("403 the function's account may not write Firestore")

    monkeypatch.setattr(PendingWork, "add", refused)
    with pytest.raises(TerminalError):  # the event is the only record of the file: Eventarc must retry
        batch.handle_event(world.settings, StorageEvent("event-0", "bucket", name(0), 1000))


@pytest.mark.parametrize("error, fix_part", [(NotFound("dataset"), "terraform apply"), (Forbidden("x"), "iam.tf"),
                                             (BadRequest("x"), "schemas")])
def test_terminal_errors_say_what_to_fix(error, fix_part):
    terminal = classify(error)
    assert isinstance(terminal, TerminalError) and not isinstance(terminal, TransientError)
    assert fix_part in terminal.fix


def test_a_load_refusing_the_data_is_told_from_other_bad_requests():
    assert is_rejected_data(BadRequest("Error while reading data", errors=[{"reason": "invalid", "message": "x"}]))
    assert not is_rejected_data(BadRequest("bad", errors=[{"reason": "invalidQuery", "message": "x"}]))
    assert not is_rejected_data(NotFound("x", errors=[{"reason": "notFound"}]))
    assert not is_rejected_data(None)


def test_a_round_whose_files_hold_no_rows_loads_nothing(world):
    """A valid snapshot without lines (bookmakers: []) is merged as done, with no BigQuery load."""
    wh = RefusingWarehouse(b"never")
    h, pending = make_holder(world, "event-1", wh)
    empty = GOOD[:GOOD.index(b'"bookmakers"')] + b'"bookmakers": []}'
    add_file(world, pending, 0, empty)
    assert h.run() == "merged"
    assert wh.loads == 0 and wh.merges == 0 and not world.quarantined and not pending.has_any()
