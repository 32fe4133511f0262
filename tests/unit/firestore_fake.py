"""An in-memory stand-in for the few Firestore calls lock.py makes, for pure unit tests.

Only what the emulator also guarantees: create() is exclusive, the rest is plain
get/set/update/delete and equality queries. The integration tests run the same lock
against the real emulator.
"""

from __future__ import annotations

import copy
import threading

from google.api_core.exceptions import AlreadyExists, NotFound


class _Snapshot:
    def __init__(self, doc_id, data):
        self.id = doc_id
        self._data = copy.deepcopy(data)

    @property
    def exists(self):
        return self._data is not None

    def to_dict(self):
        return copy.deepcopy(self._data)


class _Doc:
    def __init__(self, store, path):
        self._store, self._path = store, path
        self.id = path.split("/")[-1]

    def create(self, data):
        with self._store.lock:
            if self._path in self._store.docs:
                raise AlreadyExists(self._path)
            self._store.docs[self._path] = copy.deepcopy(data)
            self._store.writes += 1

    def set(self, data):
        with self._store.lock:
            self._store.docs[self._path] = copy.deepcopy(data)
            self._store.writes += 1

    def update(self, data):
        with self._store.lock:
            if self._path not in self._store.docs:
                raise NotFound(self._path)
            self._store.docs[self._path].update(copy.deepcopy(data))
            self._store.writes += 1

    def delete(self):
        with self._store.lock:
            self._store.docs.pop(self._path, None)
            self._store.writes += 1

    def get(self):
        self._store.reads += 1
        return _Snapshot(self.id, self._store.docs.get(self._path))


class _Query:
    def __init__(self, store, prefix, filters=(), limit=None):
        self._store, self._prefix, self._filters, self._limit = store, prefix, filters, limit

    def where(self, filter):  # noqa: A002 - the client's own keyword
        return _Query(self._store, self._prefix, self._filters + ((filter.field_path, filter.value),), self._limit)

    def limit(self, n):
        return _Query(self._store, self._prefix, self._filters, n)

    def count(self):
        query = self

        class _Aggregation:
            def get(self):
                return [[type("AggregationResult", (), {"value": sum(1 for _ in query.stream())})()]]

        return _Aggregation()

    def stream(self):
        hits = []
        for path, data in sorted(self._store.docs.items()):
            if path.startswith(self._prefix) and all(data.get(f) == v for f, v in self._filters):
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
    def __init__(self):
        self._ops = []

    def delete(self, doc):
        self._ops.append((doc, None))

    def set(self, doc, data):
        self._ops.append((doc, data))

    def commit(self):
        for doc, data in self._ops:
            doc.delete() if data is None else doc.set(data)


class FakeFirestore:
    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.reads = 0
        self.writes = 0

    def collection(self, name):
        return _Collection(self, name)

    def batch(self):
        return _Batch()
