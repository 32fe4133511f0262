"""The local BigQuery loads from gs:// URIs against the local Cloud Storage, as BigQuery does
(shared/oddsbatch/local/bigquery_emulator.py, "Load jobs from Cloud Storage"), through the official
client's load_table_from_uri, with objects the official storage client wrote to fake-gcs-server.

The rules, each from BigQuery's documentation (quoted in the launcher): a job names at most 10,000
source URIs (https://cloud.google.com/bigquery/quotas, "Load jobs"; more fails jobs.insert with
"Too many sources provided: N. Limit is 10000."); a URI may hold one '*' wildcard, after the bucket
name (JobConfigurationLoad.sourceUris); an object that does not exist fails the job with reason
notFound, "Not found: URI gs://...".
"""

from __future__ import annotations

import json
import uuid

import pytest
from google.api_core.exceptions import BadRequest, NotFound
from google.cloud import bigquery

pytestmark = pytest.mark.integration

SCHEMA = [bigquery.SchemaField("name", "STRING"), bigquery.SchemaField("n", "INT64")]


@pytest.fixture
def target(stack):
    table = f"{stack.project}.{stack.dataset}.load_from_gcs_{uuid.uuid4().hex[:8]}"
    stack.bigquery().create_table(bigquery.Table(table, schema=SCHEMA))
    yield table
    stack.bigquery().delete_table(table, not_found_ok=True)


def put(stack, name: str, rows: list[dict]) -> str:
    bucket = stack.env["ODDSBATCH_STAGING_BUCKET"]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    stack.storage().bucket(bucket).blob(name).upload_from_string(body, content_type="application/x-ndjson")
    return f"gs://{bucket}/{name}"


def load(stack, uris, table):
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON, schema=SCHEMA,
                                    write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
    return stack.bigquery().load_table_from_uri(uris, table, job_config=config)


def rows_of(stack, table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in stack.bigquery().query(f"SELECT name, n FROM `{table}`").result())


def test_a_load_from_gs_uris_lands_every_objects_rows(stack, target):
    tag = uuid.uuid4().hex[:8]
    first = put(stack, f"t/{tag}/a.ndjson", [{"name": "a", "n": 1}, {"name": "b", "n": 2}])
    second = put(stack, f"t/{tag}/b.ndjson", [{"name": "c", "n": 3}])
    job = load(stack, [first, second], target)
    job.result()
    assert rows_of(stack, target) == [("a", 1), ("b", 2), ("c", 3)]
    assert job.input_files == 2 and job.output_rows == 3
    load(stack, [second], target).result()  # WRITE_TRUNCATE: replaced, never appended
    assert rows_of(stack, target) == [("c", 3)]


def test_a_missing_object_fails_the_job_with_not_found_and_loads_nothing(stack, target):
    tag = uuid.uuid4().hex[:8]
    present = put(stack, f"t/{tag}/here.ndjson", [{"name": "a", "n": 1}])
    missing = f"gs://{stack.env['ODDSBATCH_STAGING_BUCKET']}/t/{tag}/gone.ndjson"
    job = load(stack, [present, missing], target)  # jobs.insert accepts it: the job itself fails
    with pytest.raises(NotFound, match=f"Not found: URI {missing}"):
        job.result()
    assert job.error_result["reason"] == "notFound"
    assert rows_of(stack, target) == []


def test_one_wildcard_after_the_bucket_loads_every_matching_object(stack, target):
    tag = uuid.uuid4().hex[:8]
    put(stack, f"t/{tag}/part-1.ndjson", [{"name": "a", "n": 1}])
    put(stack, f"t/{tag}/sub/part-2.ndjson", [{"name": "b", "n": 2}])
    put(stack, f"t/{tag}/other.txt", [{"name": "x", "n": 9}])
    bucket = stack.env["ODDSBATCH_STAGING_BUCKET"]
    load(stack, [f"gs://{bucket}/t/{tag}/*.ndjson"], target).result()
    assert rows_of(stack, target) == [("a", 1), ("b", 2)]
    with pytest.raises(NotFound, match="Not found: URI"):  # a wildcard that matches nothing
        load(stack, [f"gs://{bucket}/t/{tag}/none-*"], target).result()
    with pytest.raises(BadRequest, match="one '\\*' wildcard"):
        load(stack, [f"gs://{bucket}/t/{tag}/*/*.ndjson"], target)


def test_a_job_names_at_most_ten_thousand_source_uris(stack, target):
    bucket = stack.env["ODDSBATCH_STAGING_BUCKET"]
    uris = [f"gs://{bucket}/t/none/{i}.ndjson" for i in range(10_001)]
    with pytest.raises(BadRequest, match=r"Too many sources provided: 10001\. Limit is 10000\."):
        load(stack, uris, target)
    job = load(stack, uris[:10_000], target)  # at the limit: inserted; it fails on its first missing object
    with pytest.raises(NotFound, match="Not found: URI gs://"):
        job.result()
