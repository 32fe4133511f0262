"""Files that used to take an instance down, on the real stack (issue 19): a valid file far
larger than a snapshot (under ODDSBATCH_MAX_OBJECT_BYTES) is read one bookmaker at a time and
lands its rows; a gzip-compressed file, stored with `Content-Encoding: gzip` or as raw gzip
bytes, is decompressed and lands its rows instead of being quarantined as "not UTF-8"."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import date

import pytest

from oddsbatch import synth
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows

pytestmark = pytest.mark.integration

DAY = "2025-05-03"


def _upload(stack, name: str, data: bytes, content_encoding: str | None = None) -> int:
    blob = stack.storage().bucket(stack.bucket).blob(name)
    blob.content_encoding = content_encoding
    blob.upload_from_string(data, content_type="application/json")
    return blob.generation


def test_a_large_valid_file_and_gzip_files_land_their_rows(stack):
    large = synth.synthesize_large_file(date.fromisoformat(DAY), 6_000_000, seed=3)  # 6x the stream threshold
    small = [f for f in synth.synthesize_day(date.fromisoformat(DAY), games=2, snapshots=1, seed=3)
             if f[0].startswith("odds-api/game-lines/")]
    (encoded_name, encoded), (raw_name, raw) = small
    generations = {
        large[0]: _upload(stack, *large),
        encoded_name: _upload(stack, encoded_name, gzip.compress(encoded), content_encoding="gzip"),
        raw_name: _upload(stack, raw_name, gzip.compress(raw)),  # gzip bytes, no Content-Encoding
    }
    stack.wait_idle(expected_events=3, timeout=600)

    spec = table_for_endpoint("game-lines")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "game-lines", DAY))
    want = expected_rows([large, *small], generations, "game-lines")
    assert sum(want.values()) > 20_000
    assert got == want
    bucket = stack.storage().bucket(stack.bucket)
    assert not [b.name for b in bucket.list_blobs(prefix=f"quarantine/odds-api/game-lines/{DAY}/")]
