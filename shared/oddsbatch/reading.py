"""One object from the bucket to its staged text, within the instance's memory budget.

A file is read one of two ways:

* whole (`transform.staged_for_object`): fastest, but it takes about
  WHOLE_FILE_BYTES_PER_BYTE times the file's size at its peak (the parsed document, the rows,
  their text); for files up to ODDSBATCH_STREAM_OBJECT_BYTES (real snapshots are ~100 KB);
* streamed (streaming.py): one bookmaker at a time from an incremental parser, in memory that
  does not grow with the file (the raw bytes, STREAM_WORKING_BYTES, and the PIECE_SPOOL_BYTES
  chunk of the staging object's resumable upload the pieces are written to); for larger files,
  for every gzip-compressed one, and for any file whose size the event did not give.

Each file is admitted into the instance's budget (budget.py) at the cost of its way before it
is downloaded; a cost above the whole budget quarantines the file with that reason.

Gzip: an object stored gzip-compressed (its metadata says `Content-Encoding: gzip`, or its bytes
start with the gzip magic number) is downloaded as stored (`raw_download=True`: the Python client
asks with `Accept-Encoding: gzip`, and Cloud Storage then serves the object as-is,
https://cloud.google.com/storage/docs/transcoding) and decompressed here while it is parsed,
refused with a reason that says gzip when it would decompress to more than
ODDSBATCH_MAX_OBJECT_BYTES or is no valid gzip stream. The event's size is the stored
(compressed) size.
"""

from __future__ import annotations

import gzip
import io
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable, Iterator

from . import streaming, transform
from .budget import budget_of
from .config import Settings
from .errors import BadInputError
from .paths import parse_object_name
from .tables import table_for_endpoint

# Peak bytes per input byte of a file read whole, measured with tracemalloc when rows were dicts
# (markets_for_object + staging.encode): ~14 for a props snapshot, ~42 for a game-lines file of
# many bookmakers (a 29.6 MB one peaked at 1,177 MiB). The larger one, for every file. The text
# written straight from the walk (transform.staged_for_object) peaks lower (10.7 and 21.7 for a
# props snapshot and a 3 MB game-lines file, vs 12.3 and 31.8 the old way): kept as a margin.
WHOLE_FILE_BYTES_PER_BYTE = 42
WHOLE_FILE_FIXED_BYTES = 1024 * 1024
# A streamed file besides its raw bytes: the parser's buffers, one bookmaker, the per-file texts
# and the (event, bookmaker) keys met (8.4 MiB traced for the 30 MB file of ~53,600 bookmakers).
STREAM_WORKING_BYTES = 16 * 1024 * 1024
PIECE_SPOOL_BYTES = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 256 * 1024


class _MemorySink(io.BytesIO):
    """Without a staging object: the pieces in memory, readable after close (getvalue)."""

    def close(self) -> None:  # kept readable: the caller takes the text with getvalue()
        pass


@dataclass
class StagedObject:
    """One file's staged NDJSON: bytes (read whole), or the closed sink its pieces went to."""

    payload: bytes | BinaryIO
    rows: int
    snapshot: datetime | None


def whole_cost(size: int) -> int:
    return size + size * WHOLE_FILE_BYTES_PER_BYTE + WHOLE_FILE_FIXED_BYTES


def stream_cost(size: int) -> int:
    return size + STREAM_WORKING_BYTES + PIECE_SPOOL_BYTES


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of gzip data (every member), read in bounded chunks, refused
    (BadInputError, saying gzip) beyond `limit` bytes or when the data is no valid gzip."""

    def __init__(self, compressed: bytes, limit: int):
        self.inflated = gzip.GzipFile(fileobj=io.BytesIO(compressed), mode="rb")
        self.limit = limit
        self.out = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        try:
            chunk = self.inflated.read(size if size and size > 0 else _CHUNK)  # at most that many bytes
        except EOFError:
            raise BadInputError("gzip: the compressed stream is truncated") from None
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise BadInputError(f"gzip: not a valid gzip stream: {exc}") from None
        self.out += len(chunk)
        if self.out > self.limit:
            raise BadInputError(f"gzip: decompresses to more than ODDSBATCH_MAX_OBJECT_BYTES={self.limit} bytes")
        return chunk

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _gunzip_all(compressed: bytes, limit: int) -> bytes:
    reader = _Gunzip(compressed, limit)
    parts = []
    while chunk := reader.read(_CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _whole(name: str, data: bytes, generation: int, created: datetime | None) -> StagedObject:
    staged = transform.staged_for_object(name, data, generation, created)
    return StagedObject(staged.ndjson, staged.rows, _snapshot(staged.snapshot))


def _streamed(name: str, open_stream: Callable[[], BinaryIO], generation: int,
              created: datetime | None, sink: Callable[[], BinaryIO]) -> StagedObject:
    ref = parse_object_name(name)
    table_for_endpoint(ref.endpoint)  # KeyError for an endpoint without a table: a programming error
    streamed = streaming.StreamedFile(ref, open_stream, generation, created)
    out = sink()
    for text in streamed.texts():
        out.write(text)
    # Closed only when every piece is written (a file refused halfway leaves no object behind: its
    # resumable upload is never finalized); the last chunk goes while the file holds its budget.
    out.close()
    return StagedObject(out, streamed.rows, _snapshot(streamed.snapshot))


def _snapshot(text: str | None) -> datetime | None:
    return transform._timestamp(text, "snapshot")[0] if text else None


@contextmanager
def _admitted(budget, cost: int, how: str) -> Iterator[None]:
    if cost > budget.limit:  # it would wait forever: never retried into an out-of-memory loop
        raise BadInputError(f"reading it {how} needs ~{cost} bytes of memory, more than the instance's budget "
                            f"ODDSBATCH_MEMORY_BUDGET_BYTES={budget.limit}")
    with budget.hold(cost):
        yield


def read_object(settings: Settings, name: str, generation: int, created: datetime | None, size: int | None,
                download: Callable[[], tuple[bytes, str | None]],
                sink: Callable[[], BinaryIO] | None = None) -> StagedObject:
    """The staged text of one object; BadInputError (its reason) for a file to quarantine.
    `download()` returns the stored bytes and the object's Content-Encoding; `size` is the
    event's (None when it gave none). Waits while the instance's budget has no room for it.
    A file read whole gives its text as bytes; a streamed one writes its pieces to a file
    `sink()` opens (the holder's: the staging object's upload, staged_objects.py) and gives
    that file, closed. Without a sink the pieces gather in memory (tests, `oddsbatch transform`)."""
    sink = sink or _MemorySink
    limit = settings.max_object_bytes
    budget = budget_of(settings.memory_budget_bytes)
    threshold = settings.stream_object_bytes
    small = size is not None and size <= threshold
    cost = whole_cost(size) if small else stream_cost(size if size is not None else limit)
    with _admitted(budget, cost, "whole" if small else "one bookmaker at a time"):
        data, encoding = download()
        if len(data) > limit:  # the event did not say its size: checked before any parsing
            raise BadInputError(f"object of {len(data)} bytes exceeds ODDSBATCH_MAX_OBJECT_BYTES={limit}")
        # Downloaded as stored, a gzip object (Content-Encoding: gzip, or not) starts with the magic
        # number, which no JSON text can start with; the header alone is not trusted (a server that
        # transcodes anyway sends plain JSON under it).
        gzipped = data[:2] == GZIP_MAGIC
        try:
            if not gzipped and (len(data) <= threshold or not data):
                return _whole(name, data, generation, created)
            if gzipped:
                return _streamed(name, lambda: _Gunzip(data, limit), generation, created, sink)
            return _streamed(name, lambda: io.BytesIO(data), generation, created, sink)
        except streaming.NotStreamable:
            pass
        except BadInputError as bad:
            if gzipped and not bad.reason.startswith("gzip"):
                raise BadInputError(f"gzip-compressed file: {bad.reason}") from None
            raise
    # A shape the stream does not follow: read it whole, if the budget can ever hold that.
    try:
        text = _gunzip_all(data, limit) if gzipped else data
        with _admitted(budget, whole_cost(len(text)) + len(data), "whole (its shape cannot be streamed)"):
            return _whole(name, text, generation, created)
    except BadInputError as bad:
        if gzipped and not bad.reason.startswith("gzip"):
            raise BadInputError(f"gzip-compressed file: {bad.reason}") from None
        raise
