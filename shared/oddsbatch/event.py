"""The object-finalize event, as the batch reads it: the first room of the protocol.

Data flows one way: handler (which event is ours) -> event (what it says) -> batch (record
the pending marker, try the lock) -> pending (the queue) -> lock -> holder (the rounds) ->
warehouse (load and MERGE). Neither the handler nor the batch imports the other's internals:
both read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class StorageEvent:
    """The fields of a GCS object-finalize CloudEvent that the batch uses."""

    event_id: str
    bucket: str
    name: str
    generation: int
    created: str | None = None  # RFC 3339 timeCreated
    size: int | None = None

    @classmethod
    def from_cloud_event(cls, event_id: str, data: Mapping[str, Any]) -> "StorageEvent":
        size = data.get("size")
        return cls(
            event_id=str(event_id),
            bucket=str(data.get("bucket", "")),
            name=str(data.get("name", "")),
            generation=int(data.get("generation") or 0),
            created=data.get("timeCreated"),
            size=int(size) if size not in (None, "") else None,
        )
