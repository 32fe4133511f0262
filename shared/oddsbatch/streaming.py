"""A large file transformed one bookmaker at a time, so its memory does not grow with its size.

`json.loads` of a 30 MB game-lines file (one event, ~53,600 bookmakers) builds about 1 GB of
Python objects, and its staged rows as much again (issue 19). Here an incremental parser
(ijson, with its C backend yajl2_c) reads the file twice, from bytes or a decompressing stream:

1. the skeleton: the document with every event's bookmakers left out (the wrapper's and the
   events' own fields), and the file's price format (transform's rule over every price, by
   running `transform._walk` on each bookmaker);
2. the rows: each bookmaker, inside its event's fields, through the same function that stages
   a whole file (`transform.staged_from_payload`, with the file's price format and texts), its
   staged text handed out before the next bookmaker is read.

A piece (one event with one bookmaker) is a payload of its own, and a file's rows are the rows
of its pieces: the transform's file-wide rules (a repeated game line: the last one wins; one
props row per (player, line) of a market) never reach across two bookmakers, since the
bookmaker is in every natural key. A file where one (event id, bookmaker) appears twice is the
exception: NotStreamable, and so is a shape this reader does not follow; the caller then reads
the file whole (budget permitting). A valid file gives exactly the rows of the whole-file
transform (tests/unit/test_streaming.py); a bad one is refused with the first error met in
this order: the document's shape, the wrapper's and events' fields, then each bookmaker.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any, BinaryIO, Iterator

from . import transform
from .errors import BadInputError
from .paths import ObjectRef

_BOM = b"\xef\xbb\xbf"


class NotStreamable(Exception):
    """The file cannot be transformed piece by piece (see the module docstring)."""


def _parser():
    import ijson  # lazy: only a holder reading a large file needs it

    return ijson


def _events(stream: BinaryIO) -> Iterator[tuple[str, Any]]:
    """(event, value) of the JSON document in `stream`; BadInputError when it is not JSON."""
    ijson = _parser()
    head = stream.read(len(_BOM))
    if head != _BOM:
        stream = _Prefixed(head, stream)
    try:
        for _, event, value in ijson.parse(stream, use_float=True):
            yield event, value
    except ijson.IncompleteJSONError as exc:
        text = " ".join(str(exc).split())[:200]
        kind = "truncated JSON" if "premature EOF" in text or "incomplete" in text.lower() else "invalid JSON"
        raise BadInputError(f"{kind}: {text}") from None
    except ijson.JSONError as exc:
        raise BadInputError(f"invalid JSON: {' '.join(str(exc).split())[:200]}") from None


class _Prefixed(io.RawIOBase):
    """`stream` with `prefix` put back in front of it."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self.prefix, self.stream = prefix, stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.prefix and size != 0:
            out, self.prefix = self.prefix, b""
            return out
        return self.stream.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _value(first: tuple[str, Any], events: Iterator[tuple[str, Any]]) -> Any:
    """The value that starts with `first`, built whole."""
    event, value = first
    if event not in ("start_map", "start_array"):
        return value
    from ijson.common import ObjectBuilder

    builder = ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for event, value in events:
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if not depth:
                break
    return builder.value


# Where a piece's event sits in the skeleton: ("top",) the document itself, ("data",) the
# wrapper's data object, ("data", i) or ("list", i) item i of an event list.
EventAt = tuple


def _event_map(at: EventAt, events, fields: dict) -> Iterator[tuple[EventAt, Any]]:
    """The members of an event object (after its start_map) into `fields`, bookmakers left out
    (an empty list in their place) and yielded one by one as (at, bookmaker)."""
    for event, key in events:
        if event == "end_map":
            return
        first = next(events)
        if key == "bookmakers" and first[0] == "start_array":
            fields[key] = []
            for item in events:
                if item[0] == "end_array":
                    break
                yield at, _value(item, events)
        else:
            fields[key] = _value(first, events)


def _event_list(name: str, events, items: list) -> Iterator[tuple[EventAt, Any]]:
    """The items of an event list (after its start_array) into `items`, each event's bookmakers
    yielded as in `_event_map`."""
    for first in events:
        if first[0] == "end_array":
            return
        if first[0] == "start_map":
            fields: dict = {}
            items.append(fields)
            yield from _event_map((name, len(items) - 1), events, fields)
        else:
            items.append(_value(first, events))


def _pieces(stream: BinaryIO, skeleton: list) -> Iterator[tuple[EventAt, Any]]:
    """(where its event is, bookmaker) of every bookmaker in `stream`, in payload order; when
    the stream is read, skeleton[0] is the document without them."""
    events = _events(stream)
    first = next(events, None)
    if first is None:
        raise BadInputError("empty file (whitespace only)")
    if first[0] == "start_array":
        items: list = []
        skeleton.append(items)
        yield from _event_list("list", events, items)
    elif first[0] == "start_map":
        top: dict = {}
        skeleton.append(top)
        for event, key in events:
            if event == "end_map":
                break
            value_first = next(events)
            if key == "bookmakers" and value_first[0] == "start_array":
                top[key] = []
                for item in events:
                    if item[0] == "end_array":
                        break
                    yield ("top",), _value(item, events)
            elif key == "data" and value_first[0] == "start_map":
                data: dict = {}
                top[key] = data
                yield from _event_map(("data",), events, data)
            elif key == "data" and value_first[0] == "start_array":
                items = []
                top[key] = items
                yield from _event_list("data", events, items)
            else:
                top[key] = _value(value_first, events)
    else:
        raise NotStreamable("the document is no object or array")
    for _ in events:  # the parser's own end-of-document checks (trailing garbage)
        pass


def _event_of(skeleton: Any, at: EventAt) -> dict:
    if at[0] == "top":
        return skeleton
    if at[0] == "list":
        return skeleton[at[1]]
    data = skeleton["data"]
    return data if len(at) == 1 else data[at[1]]


def _where_is(skeleton, events: list[dict], at: EventAt) -> dict:
    event = _event_of(skeleton, at)
    if not any(event is e for e in events):  # e.g. bookmakers under `data` of an object that is an event
        raise NotStreamable("bookmakers outside the events the payload holds")
    return event


class StreamedFile:
    """The staged text of one file, piece by piece: iterate `texts()` once; then `rows` and
    `snapshot` (the file's snapshot time text, None without rows) hold the totals."""

    def __init__(self, ref: ObjectRef, open_stream, generation: int = 0, created: datetime | None = None):
        self.ref, self.open_stream, self.generation, self.created = ref, open_stream, int(generation), created
        self.rows = 0
        self.snapshot: str | None = None

    def _skeleton(self) -> tuple[Any, str]:
        """Pass 1: the skeleton and the file's price format."""
        skeleton: list = []
        n_prices, all_american = 0, True
        name_event = {"id": self.ref.event_id or "x"}  # any id the name allows: the fields are checked in pass 2
        snapshot = (datetime.min, "", "")
        with self.open_stream() as stream:
            for _, bookmaker in _pieces(stream, skeleton):
                try:
                    walked = transform._walk(self.ref, [dict(name_event, bookmakers=[bookmaker])], None, snapshot)
                except BadInputError:
                    continue  # pass 2 refuses the file, with the error in its context
                n_prices += walked.n_prices
                all_american = all_american and walked.all_american
        return skeleton[0], transform.price_format_of(n_prices, all_american)

    def texts(self) -> Iterator[bytes]:
        """Pass 2: staging NDJSON of each piece (bytes, maybe empty), in payload order."""
        ref = self.ref
        skeleton, price_format = self._skeleton()
        events, wrapper = transform.split_payload(skeleton)  # the shape errors of the whole file
        snapshot = transform._snapshot(ref, wrapper, self.created)
        transform._walk(ref, events, wrapper, snapshot)  # the wrapper's and every event's own fields
        texts = transform.price_texts(ref, price_format)
        seen: set = set()
        with self.open_stream() as stream:
            for at, bookmaker in _pieces(stream, []):
                event = _where_is(skeleton, events, at)
                piece = dict(event)
                piece["bookmakers"] = [bookmaker]
                walked = transform._walk(ref, [piece], wrapper, snapshot)  # validates the bookmaker
                key = (event["id"], bookmaker["key"])
                if key in seen:
                    raise NotStreamable(f"bookmaker {key[1]!r} appears twice in event {key[0]!r}")
                seen.add(key)
                staged = transform.staged_text(ref, [piece], wrapper, snapshot, self.generation, price_format, texts,
                                               walked)
                if staged.rows:
                    self.rows += staged.rows
                    self.snapshot = staged.snapshot
                    yield staged.ndjson


def stream_of(data: bytes):
    """`open_stream` over bytes already in memory."""
    return lambda: io.BytesIO(data)
