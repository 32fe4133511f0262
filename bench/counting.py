"""A counting proxy around a google.cloud.firestore Client: every document read and write
the code under test asks for, and every RPC by method name."""

from __future__ import annotations

from collections import Counter

_WRAP = {"Client", "CollectionReference", "DocumentReference", "Query", "WriteBatch"}
_WRITES = {"set", "create", "update", "delete"}


class CountingFirestore:
    def __init__(self, target, counts: Counter | None = None, ops: Counter | None = None):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "counts", counts if counts is not None else Counter(reads=0, writes=0))
        object.__setattr__(self, "ops", ops if ops is not None else Counter())

    def _wrap(self, value):
        if type(value).__name__ in _WRAP:
            return CountingFirestore(value, self.counts, self.ops)
        return value

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return self._wrap(attr)
        kind = type(self._target).__name__

        def call(*args, **kwargs):
            args = tuple(a._target if isinstance(a, CountingFirestore) else a for a in args)
            kwargs = {k: (v._target if isinstance(v, CountingFirestore) else v) for k, v in kwargs.items()}
            if kind == "WriteBatch" and name in _WRITES:  # counted at commit
                attr(*args, **kwargs)
                return self
            if kind == "WriteBatch" and name == "commit":
                n = len(getattr(self._target, "_write_pbs", []) or [])
                self.ops["batch.commit"] += 1
                self.counts["writes"] += n
                return attr(*args, **kwargs)
            if kind == "DocumentReference" and name in _WRITES:
                self.ops[f"doc.{name}"] += 1
                self.counts["writes"] += 1
            elif kind == "DocumentReference" and name == "get":
                self.ops["doc.get"] += 1
                self.counts["reads"] += 1
            elif name in ("stream", "get") and kind in ("Query", "CollectionReference"):
                self.ops["query"] += 1
                result = attr(*args, **kwargs)
                docs = list(result)
                self.counts["reads"] += max(1, len(docs))  # Firestore bills a read even for an empty result
                return iter(docs)
            return self._wrap(attr(*args, **kwargs))

        return call
