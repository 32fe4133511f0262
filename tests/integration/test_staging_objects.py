"""Staged rows travel through the staging bucket on the local stack (staged_objects.py): the
functions write one staging object per source (object, generation), BigQuery's load job reads
them from gs:// (the launcher reads fake-gcs-server, as BigQuery reads Cloud Storage), and a merged
round deletes them; a retried round reuses what its first attempt staged."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from google.cloud import bigquery

from oddsbatch import holder, sql, staged_objects, synth, transform
from oddsbatch.config import Settings
from oddsbatch.errors import TransientError
from oddsbatch.pending import Marker, marker_id
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration


def rows_on(stack, endpoint: str, day: str) -> int:
    spec = table_for_endpoint(endpoint)
    query = f"SELECT COUNT(*) AS n FROM {sql.table_path(stack.project, stack.dataset, spec.name)} WHERE game_date = @d"
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", day)])
    return next(iter(stack.bigquery().query(query, job_config=config).result()))["n"]


def staged_of_day(stack, day: str) -> list[str]:
    blobs = stack.storage().list_blobs(stack.env["ODDSBATCH_STAGING_BUCKET"], prefix=staged_objects.PREFIX)
    return [b.name for b in blobs if f"/{day}/" in b.name]


def test_the_functions_load_from_staging_objects_and_delete_them_after_the_merge(stack):
    day = "2025-03-14"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=5))
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    assert rows_on(stack, "game-lines", day) > 0 and rows_on(stack, "player-props", day) > 0
    staging = stack.env["ODDSBATCH_STAGING_BUCKET"]
    loads = [j for j in stack.bigquery().list_jobs(all_users=True)
             if getattr(j, "job_type", None) == "load" and any(f"/{day}/" in u for u in (j.source_uris or []))]
    assert loads and all(u.startswith(f"gs://{staging}/{staged_objects.PREFIX}") for j in loads for u in j.source_uris)
    with_rows = {n for n, d in files if transform.rows_for_object(n, d, generations[n])}  # only they have one
    assert {u for j in loads for u in j.source_uris} == {
        f"gs://{staging}/{staged_objects.object_name(n, generations[n])}" for n in with_rows}
    assert staged_of_day(stack, day) == []  # deleted after the MERGE
    landing = [b.name for b in stack.storage().list_blobs(stack.bucket, prefix="odds-api/") if f"/{day}/" in b.name]
    assert sorted(landing) == sorted(name for name, _ in files)  # nothing written to the landing bucket


def test_a_retried_round_loads_its_staging_objects_without_reading_the_source_again(stack, monkeypatch):
    """The first attempt stages the file and fails at its MERGE; the source is then deleted, so the
    retry can only merge the file's rows from the staging object its first attempt wrote."""
    day = "2025-03-15"
    name, data = next((n, d) for n, d in synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=1, seed=9)
                      if n.startswith("odds-api/game-lines/"))
    source_bucket = f"oddsbatch-reuse-{uuid.uuid4().hex[:8]}"  # not the landing bucket: no event fires
    bucket = stack.storage().create_bucket(source_bucket)
    blob = bucket.blob(name)
    blob.upload_from_string(data, content_type="application/json")
    settings = Settings.from_env("game-lines", stack.env)
    key = f"game-lines_{day}"
    marker = Marker(marker_id(key, source_bucket, name, blob.generation), source_bucket, name, blob.generation)

    def merge_fails(self, *args, **kwargs):
        raise TransientError("BigQuery 503 at the MERGE")

    with monkeypatch.context() as m:
        m.setattr(holder.Warehouse, "merge", merge_fails)
        with pytest.raises(TransientError):
            holder.BatchHolder(settings, key, date.fromisoformat(day), None, None, None).merge_round([marker])
    staged = staged_of_day(stack, day)
    assert staged == [staged_objects.object_name(name, blob.generation)]  # kept for the retry
    blob.delete()  # the source is gone: only the staging object can give the rows now
    result = holder.BatchHolder(settings, key, date.fromisoformat(day), None, None, None).merge_round([marker])
    assert result.files == 1 and result.gone == 0 and result.merges == 1 and result.rows > 0
    assert rows_on(stack, "game-lines", day) == result.rows
    assert staged_of_day(stack, day) == []
