"""Unit tests of reading one object within the instance's memory budget (oddsbatch.reading,
oddsbatch.budget): the way a file is read never changes its rows; a file the budget can never
hold, a gzip file that decompresses beyond the size limit or is no gzip, is quarantined with
its reason; the budget bounds the bytes in flight of every holder of the process."""

from __future__ import annotations

import gzip
import threading
from datetime import date

import pytest

from oddsbatch import budget, reading, staging, transform
from oddsbatch.config import Settings
from oddsbatch.errors import BadInputError
from oddsbatch.synth import synthesize_day, synthesize_large_file

from .test_batch import GOOD, FakeWarehouse, make_holder, name, staged_rows, world  # noqa: F401 - fixture

FILES = list(synthesize_day(date(2025, 2, 3), games=1, snapshots=2, seed=4))


def settings(**env) -> Settings:
    return Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", **env})


def read(s: Settings, name_: str, data: bytes, size=None, encoding=None, calls=None):
    def download():
        if calls is not None:
            calls.append(name_)
        return data, encoding

    staged = reading.read_object(s, name_, 7, None, len(data) if size == "event" else size, download)
    payload = staged.payload if isinstance(staged.payload, bytes) else staged.payload.getvalue()
    return payload, staged.rows, staged.snapshot


def whole(name_: str, data: bytes) -> bytes:
    return staging.encode(transform.markets_for_object(name_, data, 7))


@pytest.mark.parametrize("stream_bytes", ["1", "1048576"])
@pytest.mark.parametrize("name_,data", FILES, ids=lambda v: v if isinstance(v, str) else "")
def test_read_whole_or_streamed_plain_or_gzip_the_staged_bytes_are_the_same(name_, data, stream_bytes):
    s = settings(ODDSBATCH_STREAM_OBJECT_BYTES=stream_bytes)
    expected = whole(name_, data)
    rows = staging.row_count(staging.decode(expected))
    assert read(s, name_, data, size="event")[:2] == (expected, rows)
    assert read(s, name_, gzip.compress(data), size="event")[:2] == (expected, rows)  # magic bytes
    assert read(s, name_, gzip.compress(data), encoding="gzip")[:2] == (expected, rows)  # Content-Encoding
    assert read(s, name_, gzip.compress(data[:50]) + gzip.compress(data[50:]))[0] == expected  # two members


def test_a_gzip_file_that_decompresses_beyond_the_size_limit_is_refused_saying_gzip():
    name_, data = FILES[0]
    s = settings(ODDSBATCH_MAX_OBJECT_BYTES=str(len(data) - 1))
    with pytest.raises(BadInputError, match=r"^gzip: decompresses to more than ODDSBATCH_MAX_OBJECT_BYTES="):
        read(s, name_, gzip.compress(data))
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in ~64 KB
    with pytest.raises(BadInputError, match="^gzip: decompresses to more than"):
        read(settings(), name_, bomb, size="event")


@pytest.mark.parametrize("data,reason", [
    (b"\x1f\x8b\x08\x00garbage-that-is-no-deflate-stream", "gzip: not a valid gzip stream"),
    (gzip.compress(FILES[0][1])[:200], "gzip: the compressed stream is truncated"),
    (gzip.compress(b'{"message": "quota exceeded"}'), "gzip-compressed file: wrong shape"),
    (gzip.compress(b"<html>502</html>"), "gzip-compressed file:"),
])
def test_a_bad_gzip_file_is_refused_with_a_reason_that_says_gzip(data, reason):
    with pytest.raises(BadInputError) as bad:
        read(settings(), FILES[0][0], data)
    assert bad.value.reason.startswith(reason) and "0x8b" not in bad.value.reason


def test_a_file_the_budget_can_never_hold_is_refused_before_it_is_downloaded():
    name_, data = FILES[1]
    s = settings(ODDSBATCH_MEMORY_BUDGET_BYTES=str(4 * 1024 * 1024))
    calls = []
    with pytest.raises(BadInputError, match=r"more than the instance's budget ODDSBATCH_MEMORY_BUDGET_BYTES=4194304"):
        read(s, name_, data, size=len(data), calls=calls)  # whole: 43x its size + 1 MiB
    assert calls == []
    streamed = settings(ODDSBATCH_MEMORY_BUDGET_BYTES=str(64 * 1024 * 1024), ODDSBATCH_STREAM_OBJECT_BYTES="1")
    assert read(streamed, name_, data, size=len(data))[0] == whole(name_, data)  # streamed: it fits


def test_a_large_valid_file_streams_within_a_budget_far_below_its_whole_cost():
    name_, data = synthesize_large_file(date(2025, 2, 3), 3_000_000)
    s = settings(ODDSBATCH_MEMORY_BUDGET_BYTES=str(32 * 1024 * 1024))
    assert reading.whole_cost(len(data)) > s.memory_budget_bytes >= reading.stream_cost(len(data))
    payload, rows, snapshot = read(s, name_, data, size=len(data))
    assert payload == whole(name_, data) and rows > 10_000 and snapshot is not None


def test_the_budget_never_holds_more_than_its_limit_and_lets_what_fits_run_together():
    b = budget.MemoryBudget(100)
    both_in = threading.Barrier(2, timeout=30)

    def fits():
        with b.hold(40):
            both_in.wait()  # only passes when the two holds are in at once

    threads = [threading.Thread(target=fits) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.peak == 80 and b.held == 0

    b = budget.MemoryBudget(100)
    first_in, release = threading.Event(), threading.Event()

    def first():
        with b.hold(60):
            first_in.set()
            release.wait()

    def second():
        first_in.wait()
        with b.hold(60):
            pass

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_in.wait()
    release.set()
    for t in threads:
        t.join()
    assert b.peak == 60 and b.held == 0  # the second waited for the first
    with pytest.raises(budget.OverBudget):
        with b.hold(101):
            pass


def test_one_budget_per_process_shared_by_every_holder():
    assert budget.budget_of(123) is budget.budget_of(123) is not budget.budget_of(124)


@pytest.mark.parametrize("env,expected", [
    ({}, int(512 * 2 ** 20 * 0.4)),
    ({"ODDSBATCH_INSTANCE_MEMORY": "1Gi"}, int(2 ** 30 * 0.4)),
    ({"ODDSBATCH_INSTANCE_MEMORY": "2G"}, int(2e9 * 0.4)),
    ({"ODDSBATCH_INSTANCE_MEMORY": "768MB"}, int(768e6 * 0.4)),
    ({"ODDSBATCH_INSTANCE_MEMORY": "1Gi", "ODDSBATCH_MEMORY_BUDGET_BYTES": "1000000"}, 1_000_000),
])
def test_the_budget_comes_from_the_deployed_tier_unless_set(env, expected):
    assert settings(**env).memory_budget_bytes == expected


@pytest.mark.parametrize("value", ["lots", "512", "-1Gi", "512Ki", "Gi"])
def test_a_tier_that_is_no_memory_quantity_is_refused(value):
    with pytest.raises(ValueError, match="ODDSBATCH_INSTANCE_MEMORY must look like 512Mi"):
        settings(ODDSBATCH_INSTANCE_MEMORY=value)


def test_the_holder_quarantines_a_file_over_the_budget_and_merges_the_others(world):
    world.settings = world.settings.with_(memory_budget_bytes=2 * 1024 * 1024)
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    sizes = {0: len(GOOD), 1: 20 * 1024 * 1024, 2: None}  # as the events say; None: admitted as the largest
    for i, size in sizes.items():
        world.objects[name(i)] = GOOD
        pending.add("bucket", name(i), 1000 + i, f"event-{i}", None, size)
    assert h.run() == "merged"
    assert wh.merges == 1 and staged_rows(wh.staged[0]) == 12  # file 0 merged
    assert sorted(n for n, _ in world.quarantined) == [name(1), name(2)]
    assert all("more than the instance's budget ODDSBATCH_MEMORY_BUDGET_BYTES=2097152" in r
               for _, r in world.quarantined)
    assert not pending.has_any()


def test_a_load_uploads_its_file_in_small_chunks():
    from google.cloud.bigquery import client as bigquery_client_module

    from oddsbatch import clients

    clients.bigquery_client("p", endpoint="http://127.0.0.1:1")  # no request is made
    assert bigquery_client_module._DEFAULT_CHUNKSIZE == clients.LOAD_UPLOAD_CHUNK_BYTES == 8 * 1024 * 1024
    assert clients.LOAD_UPLOAD_CHUNK_BYTES % (256 * 1024) == 0
    clients.reset()


def test_a_file_that_cannot_be_streamed_is_read_whole_when_the_budget_allows():
    import json

    name_, data = FILES[0]
    event = json.loads(data)
    event["bookmakers"].append(dict(event["bookmakers"][0], title="again"))  # one bookmaker twice
    twice = json.dumps(event).encode()
    s = settings(ODDSBATCH_STREAM_OBJECT_BYTES="1")
    assert read(s, name_, twice, size="event")[0] == whole(name_, twice)
    assert read(s, name_, gzip.compress(twice), size="event")[0] == whole(name_, twice)
    tight = settings(ODDSBATCH_STREAM_OBJECT_BYTES="1", ODDSBATCH_MEMORY_BUDGET_BYTES=str(20 * 1024 * 1024))
    with pytest.raises(BadInputError, match=r"whole \(its shape cannot be streamed\) needs ~\d+ bytes"):
        read(tight, name_, twice + b" " * 1_000_000, size="event")  # 43x 1 MB does not fit 20 MiB
