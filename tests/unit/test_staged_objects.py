"""Staged rows go to one staging object per source (object, generation) in the staging bucket and
are loaded from their gs:// URIs (staged_objects.py): nothing of them stays in the holder's memory
or /tmp, a retried round reuses what an earlier attempt staged, and a merged round deletes them."""

from __future__ import annotations

import gzip

import pytest

from oddsbatch import holder, logs, staged_objects
from oddsbatch.errors import TerminalError, TransientError

from .storage_fake import STAGING_BUCKET, FakeStorage
from .test_batch import GOOD, FakeWarehouse, add_file, make_holder, name, staged_rows, world  # noqa: F401 - fixture


def staged_names(world) -> list[str]:
    return sorted(world.staged)


def test_a_merged_round_loads_from_the_staging_objects_and_then_deletes_them(world, monkeypatch):
    loaded = []
    wh = FakeWarehouse()
    real_stage = wh.stage

    def stage(run_id, uris, created=False, step="load"):
        loaded.append(list(uris))
        kept = sorted(world.staged)  # the objects exist while the load reads them
        assert kept == sorted(u.removeprefix(f"gs://{STAGING_BUCKET}/") for u in uris)
        return real_stage(run_id, uris, created, step)

    wh.stage = stage
    h, pending = make_holder(world, "event-1", wh)
    for i in range(3):
        add_file(world, pending, i)
    assert h.run() == "merged"
    assert wh.merges == 1 and staged_rows(wh.staged[0]) == 3 * 12
    assert [sorted(u) for u in loaded] == [sorted(f"gs://{STAGING_BUCKET}/{staged_objects.object_name(name(i), 1000 + i)}"
                                                  for i in range(3))]
    assert staged_names(world) == []  # deleted after the MERGE


def test_a_retried_round_reuses_the_staging_objects_without_reading_the_sources_again(world, monkeypatch):
    merged = []
    monkeypatch.setattr(logs, "log", lambda decision, **fields: (decision == "merged" and merged.append(fields))
                        or {"message": decision})
    h, pending = make_holder(world, "event-1", FakeWarehouse(fail_merges=1))
    for i in range(2):
        add_file(world, pending, i)
    with pytest.raises(TransientError):
        h.run()
    assert world.reads == {name(0): 1, name(1): 1}
    assert len(staged_names(world)) == 2  # a round that raises keeps them for its retry
    wh = FakeWarehouse()
    h2, _ = make_holder(world, "event-1", wh)
    assert h2.run() == "merged" and wh.merges == 1
    assert world.reads == {name(0): 1, name(1): 1}  # no second download, so no second transform
    assert [m["reused"] for m in merged] == [2] and h2.results[0].reused == 2
    assert staged_rows(wh.staged[0]) == 2 * 12 and staged_names(world) == []


def test_a_staging_object_without_its_totals_is_staged_again(world):
    """A crash between a streamed file's upload and the metadata that completes it: not trusted."""
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    world.staged[staged_objects.object_name(name(0), 1000)] = (b'{"truncated": ', {})
    assert h.run() == "merged"
    assert world.reads == {name(0): 1}
    assert staged_rows(h._warehouse.staged[0]) == 12


def test_a_staging_object_of_another_format_is_not_reused(world, monkeypatch):
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    stale = {staged_objects.ROWS_KEY: "99", staged_objects.SNAPSHOT_KEY: "", staged_objects.FORMAT_KEY: "v0-old"}
    world.staged[staged_objects.object_name(name(0), 1000)] = (b"old text", stale)
    assert h.run() == "merged" and world.reads == {name(0): 1}


def test_a_streamed_file_is_written_in_bounded_chunks_and_completed_by_its_metadata(world, monkeypatch):
    opened = []
    real_open = __import__("tests.unit.storage_fake", fromlist=["StagedBlob"]).StagedBlob.open

    def spy(self, mode="rb", chunk_size=None, content_type=None, **kw):
        opened.append((chunk_size, content_type))
        return real_open(self, mode, chunk_size, content_type, **kw)

    monkeypatch.setattr("tests.unit.storage_fake.StagedBlob.open", spy)
    world.settings = world.settings.with_(stream_object_bytes=1)  # every file streamed
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0, gzip.compress(GOOD))
    keep = {}
    monkeypatch.setattr(staged_objects.StagingObjects, "delete", lambda self, uris, **kw: keep.update(
        {u: dict(world.staged) for u in uris}) or 0)
    assert h.run() == "merged"
    assert opened == [(staged_objects.WRITE_CHUNK_BYTES, staged_objects.CONTENT_TYPE)]
    assert staged_objects.WRITE_CHUNK_BYTES % (256 * 1024) == 0
    (data, meta), = world.staged.values()
    assert meta[staged_objects.ROWS_KEY] == "12" and meta[staged_objects.FORMAT_KEY] == staged_objects.FORMAT
    assert meta[staged_objects.SNAPSHOT_KEY].startswith("2025-01-20T18:00")
    assert staged_rows(wh.staged[0]) == 12


def test_a_holder_without_a_staging_bucket_stops_with_the_setting_named(world):
    world.settings = world.settings.with_(staging_bucket=None)
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    with pytest.raises(TerminalError, match="ODDSBATCH_STAGING_BUCKET is not set"):
        h.run()
    assert pending.has_any()  # the work stays queued


def test_a_failed_delete_does_not_fail_the_merged_round(world, monkeypatch):
    seen = []
    monkeypatch.setattr(logs, "log", lambda decision, **fields: seen.append(decision) or {"message": decision})

    def refuse(self):
        raise RuntimeError("503 backend")

    monkeypatch.setattr("tests.unit.storage_fake.StagedBlob.delete", refuse)
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    assert h.run() == "merged" and wh.merges == 1 and not pending.has_any()
    assert "staging_delete_failed" in seen and len(world.staged) == 1  # left to the lifecycle rule


def test_a_transient_staging_write_failure_raises_and_quarantines_nothing(world, monkeypatch):
    from google.api_core.exceptions import ServiceUnavailable

    def down(self, data, content_type=None, **kw):
        raise ServiceUnavailable("503 staging bucket")

    monkeypatch.setattr("tests.unit.storage_fake.StagedBlob.upload_from_string", down)
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    with pytest.raises(TransientError, match="503"):
        h.run()
    assert world.quarantined == [] and pending.has_any()


def test_a_streamed_files_upload_failure_raises_transient_and_quarantines_nothing(world, monkeypatch):
    from google.api_core.exceptions import ServiceUnavailable

    def down(self):
        raise ServiceUnavailable("503 resumable upload")

    monkeypatch.setattr("tests.unit.storage_fake._Writer.close", down)
    world.settings = world.settings.with_(stream_object_bytes=1)  # streamed: the resumable upload's path
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    with pytest.raises(TransientError, match="503 resumable upload"):
        h.run()
    assert world.quarantined == [] and pending.has_any() and world.staged == {}


def test_a_file_refused_halfway_through_its_stream_leaves_no_staging_object(world, monkeypatch):
    from oddsbatch import streaming
    from oddsbatch.errors import BadInputError

    real_texts = streaming.StreamedFile.texts

    def refused_after_one_piece(self):
        pieces = real_texts(self)
        yield next(pieces)  # written to the upload
        raise BadInputError("a value out of its column's range in the second bookmaker")

    monkeypatch.setattr(streaming.StreamedFile, "texts", refused_after_one_piece)
    world.settings = world.settings.with_(stream_object_bytes=1)
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    h.run()
    assert world.quarantined == [(name(0), "a value out of its column's range in the second bookmaker")]
    assert world.staged == {}  # its upload was never finalized


def test_the_name_carries_the_format_the_object_and_its_generation():
    assert staged_objects.object_name("odds-api/game-lines/2025-01-21/x.json", 17) == (
        f"staged/{staged_objects.FORMAT}/odds-api/game-lines/2025-01-21/x.json/17.ndjson")
    assert staged_objects.FORMAT.startswith("v1-") and len(staged_objects.FORMAT) == 15
