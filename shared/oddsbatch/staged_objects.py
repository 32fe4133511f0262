"""Each source object's staged rows, written once to an object of the staging bucket, from which
BigQuery's load job reads them (gs:// URIs), so a round's staged rows never sit in the
function's memory or /tmp (on Cloud Run gen2 /tmp is memory too; issue 19).

- One staging object per source (object, generation): `staged/{FORMAT}/{object name}/{generation}.ndjson`.
  FORMAT is a digest of the code and schemas that make the staged text, so a deploy whose
  transform differs never reuses text an older one staged; within one deploy a retried round
  finds the object (its metadata says it is complete: rows and snapshot time) and loads it
  without downloading and transforming the source again.
- Written streaming: a file read whole is uploaded from the bytes it already has (one request,
  metadata included); a streamed one goes through a resumable upload of WRITE_CHUNK_BYTES
  chunks as its pieces come, and its totals are patched into the metadata once it is written.
  An object without them (a crash between the two) is not trusted: it is staged again. Cloud
  Storage objects appear whole or not at all, and the text of one (object, generation) is
  always the same, so a rewrite by a twin holder changes nothing a load reads.
- Deleted after the round's MERGE (best effort); the bucket's lifecycle rule
  (terraform/storage.tf, var.staging_object_age_days) removes whatever a crash left.
- A dedicated bucket, never the landing one: Eventarc filters Cloud Storage events by bucket
  only, so an object written there would fire a finalize event to both functions.

BigQuery reads gs://bucket/name URIs without a generation ("If you include a generation number
in the Cloud Storage URI, then the load job fails":
https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-json, Limitations); the source's
generation is in the name instead.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable

from . import logs
from .errors import TerminalError, classify

PREFIX = "staged/"
CONTENT_TYPE = "application/x-ndjson"
# A resumable upload's chunk must be a multiple of 256 KiB; the client's default is 40 MiB, which
# would be held in memory per file being written (BlobWriter: https://cloud.google.com/python/docs/
# reference/storage/latest/google.cloud.storage.fileio.BlobWriter). reading.PIECE_SPOOL_BYTES, the
# memory budget's share for a streamed file's staged text, is this bound.
WRITE_CHUNK_BYTES = 1024 * 1024
ROWS_KEY, SNAPSHOT_KEY, FORMAT_KEY = "oddsbatch-rows", "oddsbatch-snapshot", "oddsbatch-format"
_PACKAGE = Path(__file__).resolve().parent
# What decides a file's staged text: a change to any of these is a new FORMAT.
_FORMAT_SOURCES = ("transform.py", "staging.py", "streaming.py", "reading.py", "tables.py", "teams.py", "paths.py")


def _format() -> str:
    digest = hashlib.sha256()
    for name in _FORMAT_SOURCES:
        path = _PACKAGE / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    for path in sorted((_PACKAGE / "schemas").glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return "v1-" + digest.hexdigest()[:12]


FORMAT = _format()


@dataclass(frozen=True)
class StagedLocation:
    """Where one source object's staged rows are: `uri` (None when it has no rows), rows, size."""

    uri: str | None
    rows: int
    bytes: int
    snapshot: datetime | None
    reused: bool = False


def object_name(source_name: str, generation: int) -> str:
    return f"{PREFIX}{FORMAT}/{source_name}/{generation}.ndjson"


def _metadata(rows: int, snapshot: datetime | None) -> dict[str, str]:
    return {ROWS_KEY: str(rows), SNAPSHOT_KEY: snapshot.isoformat() if snapshot else "", FORMAT_KEY: FORMAT}


def _snapshot(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class _LazyWriter:
    """The resumable upload of a streamed file's staged text, opened at its first piece (a file
    without rows leaves no object), WRITE_CHUNK_BYTES in memory at most."""

    def __init__(self, blob):
        self.blob, self.writer, self.bytes = blob, None, 0

    def write(self, data: bytes) -> int:
        try:
            if self.writer is None:
                self.writer = self.blob.open("wb", chunk_size=WRITE_CHUNK_BYTES, content_type=CONTENT_TYPE)
            written = self.writer.write(data)
        except Exception as exc:  # an upload error is the round's (retried), never the file's fault
            raise classify(exc) from exc
        self.bytes += len(data)
        return written

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as exc:
                raise classify(exc) from exc


class StagingObjects:
    """The staging bucket of one function (ODDSBATCH_STAGING_BUCKET). Every Google error comes
    out classified (errors.classify): a transient one makes the round raise and Eventarc retry,
    never a file quarantined for it."""

    def __init__(self, bucket_name: str | None, client):
        if not bucket_name:
            raise TerminalError("ODDSBATCH_STAGING_BUCKET is not set: a holder stages its rows there",
                                fix="set ODDSBATCH_STAGING_BUCKET (deploy.sh passes Terraform's "
                                    "staging_bucket output) and redeploy")
        self.bucket_name = bucket_name
        self.bucket = client.bucket(bucket_name)

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{name}"

    def find(self, source_name: str, generation: int) -> StagedLocation | None:
        """The staging object a previous attempt completed for this (object, generation), if any."""
        name = object_name(source_name, generation)
        try:
            blob = self.bucket.get_blob(name)
        except Exception as exc:
            raise classify(exc) from exc
        meta = (blob.metadata or {}) if blob is not None else {}
        if blob is None or meta.get(FORMAT_KEY) != FORMAT or not (meta.get(ROWS_KEY) or "").isdigit():
            return None  # absent, or written but never completed (its totals are patched last)
        rows = int(meta[ROWS_KEY])
        return StagedLocation(self.uri(name) if rows else None, rows, int(blob.size or 0),
                          _snapshot(meta.get(SNAPSHOT_KEY, "")), reused=True)

    def put(self, source_name: str, generation: int, data: bytes, rows: int,
            snapshot: datetime | None) -> StagedLocation:
        """A file read whole: its staged bytes in one upload, the metadata with them."""
        if not rows:
            return StagedLocation(None, 0, 0, snapshot)
        name = object_name(source_name, generation)
        blob = self.bucket.blob(name)
        blob.metadata = _metadata(rows, snapshot)
        try:
            blob.upload_from_string(data, content_type=CONTENT_TYPE)
        except Exception as exc:
            raise classify(exc) from exc
        return StagedLocation(self.uri(name), rows, len(data), snapshot)

    def sink(self, source_name: str, generation: int) -> Callable[[], BinaryIO]:
        """The writer a streamed file's pieces go to (reading.read_object's `sink`)."""
        return lambda: _LazyWriter(self.bucket.blob(object_name(source_name, generation)))

    def finish(self, source_name: str, generation: int, written, rows: int,
               snapshot: datetime | None) -> StagedLocation:
        """A streamed file, written: record its totals (what makes it complete for a retry)."""
        name = object_name(source_name, generation)
        if not rows:
            if getattr(written, "writer", None) is not None:  # pieces but no rows: nothing to load
                self.delete([self.uri(name)])
            return StagedLocation(None, 0, 0, snapshot)
        blob = self.bucket.blob(name)
        blob.metadata = _metadata(rows, snapshot)
        try:
            blob.patch()
        except Exception as exc:
            raise classify(exc) from exc
        return StagedLocation(self.uri(name), rows, int(getattr(written, "bytes", 0)), snapshot)

    def delete(self, uris: list[str], workers: int = 8, **log_fields) -> int:
        """Best effort (the lifecycle rule is the backstop), `workers` at a time: the number that
        failed, each logged. One request per object (a round has up to MAX_FILES_PER_ROUND)."""
        prefix = f"gs://{self.bucket_name}/"

        def delete_one(uri: str) -> bool:
            try:
                self.bucket.blob(uri[len(prefix):]).delete()
                return True
            except Exception as exc:  # noqa: BLE001 - cleanup must not fail a merged round
                if type(exc).__name__ == "NotFound":
                    return True
                logs.log("staging_delete_failed", severity="WARNING", uri=uri, error=str(exc)[:300], **log_fields)
                return False

        if len(uris) <= 1:
            return sum(not delete_one(u) for u in uris)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return sum(not ok for ok in pool.map(delete_one, uris))
