"""An in-memory stand-in for the few Firestore calls lock.py makes, for pure unit tests.

What real Firestore guarantees and Google's emulator honours (tests/integration/
test_firestore_differential.py runs the same assertions against this fake and the emulator): create() is exclusive, and
update/delete honour write preconditions the way Firestore documents them: `last_update_time`
("the target document must exist and have been last updated at that time",
https://cloud.google.com/ruby/docs/reference/google-cloud-firestore-v1/latest/Google-Cloud-Firestore-V1-Precondition)
fails with FailedPrecondition, `exists=True` on a missing document with NotFound, `exists=False`
on an existing one with AlreadyExists. Every write gives its document a strictly later
update_time; snapshots carry update_time and read_time. The rest is plain get/set, and queries
with ==, <, <=, >, >= filters (compared as Firestore orders strings: by code point) and
`select` (a projection: the fake returns the whole document, which a caller reading the
projected fields cannot tell apart). The integration tests run the same lock against the real emulator.

`on_call` (None by default) is called as on_call(operation, path) before every call a client
would send to Firestore, outside the store lock: tests/explore switches between invocations
there. A batch commit is one call and applies atomically, as Firestore's commit does ("Fails
the entire write if any precondition is not met",
https://cloud.google.com/nodejs/docs/reference/firestore/latest/firestore/writebatch).
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta, timezone

from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore
from google.cloud.firestore_v1._helpers import ExistsOption, LastUpdateOption


class _WriteResult:
    def __init__(self, update_time):
        self.update_time = update_time


class _Snapshot:
    def __init__(self, doc_id, data, update_time=None, read_time=None):
        self.id = doc_id
        self._data = copy.deepcopy(data)
        self.update_time = update_time if data is not None else None
        self.read_time = read_time

    @property
    def exists(self):
        return self._data is not None

    def to_dict(self):
        return copy.deepcopy(self._data)


class _Doc:
    def __init__(self, store, path):
        self._store, self._path = store, path
        self.id = path.split("/")[-1]

    def _check(self, option):
        """Raise as Firestore does when the write's precondition does not hold (under the store lock)."""
        exists = self._path in self._store.docs
        if isinstance(option, LastUpdateOption):
            stored = self._store.update_time(self._path)
            if not exists or stored != option._last_update_time:
                raise FailedPrecondition(f"the stored version ({stored}) does not match the required base "
                                         f"version ({option._last_update_time}): {self._path}")
        elif isinstance(option, ExistsOption):
            if option._exists and not exists:
                raise NotFound(self._path)
            if not option._exists and exists:
                raise AlreadyExists(self._path)

    def create(self, data):
        self._store.call("create", self._path)
        with self._store.lock:
            if self._path in self._store.docs:
                raise AlreadyExists(self._path)
            self._store.docs[self._path] = copy.deepcopy(data)
            return _WriteResult(self._store.wrote(self._path))

    def set(self, data):
        self._store.call("set", self._path)
        return self._set(data)

    def _set(self, data):
        with self._store.lock:
            self._store.docs[self._path] = copy.deepcopy(data)
            return _WriteResult(self._store.wrote(self._path))

    def update(self, data, option=None):
        if isinstance(option, ExistsOption):  # what the official client says, too
            raise ValueError("you must not pass an explicit write option to update.")
        self._store.call("update", self._path)
        with self._store.lock:
            if self._path not in self._store.docs:
                raise NotFound(self._path)
            self._check(option)
            self._store.docs[self._path].update(copy.deepcopy(data))
            return _WriteResult(self._store.wrote(self._path))

    def delete(self, option=None):
        self._store.call("delete", self._path)
        return self._delete(option)

    def _delete(self, option=None):
        with self._store.lock:
            self._check(option)
            self._store.docs.pop(self._path, None)
            return _WriteResult(self._store.wrote(self._path))

    def get(self):
        self._store.call("get", self._path)
        with self._store.lock:
            self._store.reads += 1
            data = self._store.docs.get(self._path)
            stamp = self._store.update_time(self._path) if data is not None else None
            return _Snapshot(self.id, data, stamp, self._store.now())


_OPERATORS = {"==": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _matches(value, op: str, wanted) -> bool:
    if op not in _OPERATORS:
        raise NotImplementedError(f"the fake has no {op!r} filter")
    if op != "==" and (value is None or type(value) is not type(wanted)):
        return False  # Firestore compares values of one type only
    return _OPERATORS[op](value, wanted)


class _Query:
    def __init__(self, store, prefix, filters=(), limit=None):
        self._store, self._prefix, self._filters, self._limit = store, prefix, filters, limit

    def where(self, filter):  # noqa: A002 - the client's own keyword
        op = getattr(filter, "op_string", "==")
        return _Query(self._store, self._prefix, self._filters + ((filter.field_path, op, filter.value),), self._limit)

    def select(self, field_paths):
        return self

    def limit(self, n):
        return _Query(self._store, self._prefix, self._filters, n)

    def count(self):
        query = self

        class _Aggregation:
            def get(self):
                query._store.call("count", query._prefix)
                return [[type("AggregationResult", (), {"value": sum(1 for _ in query._hits())})()]]

        return _Aggregation()

    def stream(self):
        self._store.call("query", self._prefix)
        return self._hits()

    def _hits(self):
        hits = []
        for path, data in sorted(self._store.docs.items()):
            if path.startswith(self._prefix) and all(_matches(data.get(f), op, v) for f, op, v in self._filters):
                hits.append(_Snapshot(path.split("/")[-1], data))
        self._store.reads += max(1, len(hits))
        return iter(hits[: self._limit] if self._limit else hits)


class _Collection(_Query):
    def __init__(self, store, name):
        super().__init__(store, name + "/")
        self.name = name

    def document(self, doc_id):
        return _Doc(self._store, f"{self.name}/{doc_id}")


class _Batch:
    """A batched write: create/set/update/delete, applied in order by one commit, all or nothing
    ("In a set of atomic operations, either all of the operations succeed, or none of them are
    applied", https://cloud.google.com/firestore/docs/manage-data/transactions)."""

    def __init__(self, store=None):
        self._store = store
        self._ops = []

    def create(self, doc, data):
        self._ops.append(("create", doc, data, None))

    def set(self, doc, data):
        self._ops.append(("set", doc, data, None))

    def update(self, doc, data, option=None):
        if isinstance(option, ExistsOption):  # what the official client says, too
            raise ValueError("you must not pass an explicit write option to update.")
        self._ops.append(("update", doc, data, option))

    def delete(self, doc, option=None):
        self._ops.append(("delete", doc, None, option))

    def commit(self):
        if self._store is None:
            for kind, doc, data, option in self._ops:
                doc.delete(option) if kind == "delete" else getattr(doc, kind)(data)
            return
        self._store.call("commit", self._ops[0][1]._path if self._ops else "")
        with self._store.lock:  # one atomic commit: a failing write undoes the ones before it
            saved = self._store._save()
            try:
                return [self._apply(*op) for op in self._ops]
            except Exception:
                self._store._restore(saved)
                raise

    @staticmethod
    def _apply(kind, doc, data, option):
        store = doc._store
        if kind == "create":
            if doc._path in store.docs:
                raise AlreadyExists(doc._path)
            store.docs[doc._path] = copy.deepcopy(data)
            return _WriteResult(store.wrote(doc._path))
        if kind == "set":
            return doc._set(data)
        if kind == "update":
            if doc._path not in store.docs:
                raise NotFound(doc._path)
            doc._check(option)
            store.docs[doc._path].update(copy.deepcopy(data))
            return _WriteResult(store.wrote(doc._path))
        return doc._delete(option)


class FakeFirestore:
    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.lock = threading.RLock()
        self.reads = 0
        self.writes = 0
        self._update_times: dict[str, tuple[datetime, dict]] = {}  # path -> (update_time, the dict it stamps)
        self._last_stamp: dict[str, datetime] = {}  # path -> its latest stamp, deletes included
        self.on_call = None  # on_call(operation, path) before every client call (tests/explore)

    def call(self, operation: str, path: str) -> None:
        if self.on_call is not None:
            self.on_call(operation, path)

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)  # frozen by freezegun where a test freezes time

    def _stamp(self, path: str) -> datetime:
        """A time strictly after every earlier write to path (microseconds, as Firestore's)."""
        stamp = self.now()
        previous = self._last_stamp.get(path)
        if previous is not None and stamp <= previous:
            stamp = previous + timedelta(microseconds=1)
        self._last_stamp[path] = stamp
        return stamp

    def wrote(self, path: str) -> datetime:
        """Count a write (the document's new state is in .docs, or it is gone) and stamp it."""
        self.writes += 1
        stamp = self._stamp(path)
        if path in self.docs:
            self._update_times[path] = (stamp, self.docs[path])
        else:
            self._update_times.pop(path, None)
        return stamp

    def update_time(self, path: str) -> datetime | None:
        """A document a test put into .docs directly counts as written when first seen."""
        if path not in self.docs:
            return None
        known = self._update_times.get(path)
        if known is None or known[1] is not self.docs[path]:
            known = self._update_times[path] = (self._stamp(path), self.docs[path])
        return known[0]

    def _save(self):
        """Everything a commit may change, to undo it (document dicts keep their identity)."""
        return (dict(self.docs), {p: copy.deepcopy(d) for p, d in self.docs.items()}, dict(self._update_times),
                dict(self._last_stamp), self.writes)

    def _restore(self, saved) -> None:
        docs, contents, self._update_times, self._last_stamp, self.writes = saved
        for path, data in docs.items():
            data.clear()
            data.update(contents[path])
        self.docs.clear()
        self.docs.update(docs)

    # the official client's own factory of write preconditions (a static method there)
    write_option = staticmethod(firestore.Client.write_option)

    def collection(self, name):
        return _Collection(self, name)

    def batch(self):
        return _Batch(self)
