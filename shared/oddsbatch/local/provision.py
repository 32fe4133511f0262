"""Create (and reset) what the functions expect in the local emulators: bucket, dataset, tables,
the compatibility views (dataset ODDSBATCH_LEGACY_DATASET, default nba_raw) and the table functions.

The tables come from `oddsbatch.tables.all_tables()` (the schema files Terraform also reads):
DATE partitioning on `partition_field` with require_partition_filter, and clustering. The
table functions come from `oddsbatch.routines` (the SQL files Terraform also reads).
Clients come from `oddsbatch.clients`, so the emulator variables must be in os.environ
(`Stack.apply_env()` / `apply_env(load_env(state_dir))` do that).
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

from .. import clients
from ..config import Settings
from ..ingest_log import log_tables
from ..routines import LEGACY_DATASET, create_legacy_views, create_routines
from ..tables import TableSpec, all_tables


def table_resource(project: str, dataset: str, spec: TableSpec):
    from google.cloud import bigquery

    table = bigquery.Table(f"{project}.{dataset}.{spec.name}", schema=spec.bigquery_schema())
    table.description = spec.description
    table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY,
                                                        field=spec.partition_field)
    table.require_partition_filter = spec.require_partition_filter
    table.clustering_fields = list(spec.clustering) or None
    return table


def create_tables(project: str, dataset: str, endpoint: str | None = None,
                  legacy_dataset: str = LEGACY_DATASET) -> list[str]:
    """Both target tables and the ingest log, the compatibility views over them (in their own
    dataset, the old pipeline's name), then the table functions; every name made in `dataset`."""
    bq = clients.bigquery_client(project, endpoint)
    made = []
    for spec in [*all_tables().values(), *log_tables().values()]:  # + odds_api_ingest_log (ingest_log.json)
        bq.create_table(table_resource(project, dataset, spec), exists_ok=True)
        made.append(spec.name)
    bq.create_dataset(f"{project}.{legacy_dataset}", exists_ok=True)
    create_legacy_views(bq, project, dataset, legacy_dataset)
    return made + create_routines(bq, project, dataset, legacy_dataset)


def legacy_dataset_of(env: Mapping[str, str]) -> str:
    return env.get("ODDSBATCH_LEGACY_DATASET") or LEGACY_DATASET


def _retry(fn, attempts: int = 40, delay: float = 0.25):
    for i in range(attempts):
        try:
            return fn()
        except Exception:  # an emulator that accepts connections but is not serving yet
            if i == attempts - 1:
                raise
            time.sleep(delay)


def provision(env: Mapping[str, str]) -> dict:
    """Bucket, dataset, both tables and the table functions; idempotent. env = the stack's local.env values."""
    project, bucket, dataset = env["ODDSBATCH_PROJECT"], env["ODDSBATCH_BUCKET"], env["ODDSBATCH_DATASET"]
    endpoint = env["ODDSBATCH_BIGQUERY_ENDPOINT"]
    gcs = clients.storage_client(project)
    _retry(lambda: gcs.bucket(bucket).exists() or gcs.create_bucket(bucket))
    staging = env.get("ODDSBATCH_STAGING_BUCKET")  # the holders' staged rows (staged_objects.py)
    if staging:
        _retry(lambda: gcs.bucket(staging).exists() or gcs.create_bucket(staging))
    bq = clients.bigquery_client(project, endpoint)
    _retry(lambda: bq.create_dataset(f"{project}.{dataset}", exists_ok=True))
    tables = create_tables(project, dataset, endpoint, legacy_dataset_of(env))
    return {"bucket": bucket, "staging_bucket": staging, "dataset": dataset, "tables": tables,
            "legacy_dataset": legacy_dataset_of(env)}


def collections(env: Mapping[str, str]) -> tuple[str, ...]:
    s = Settings.from_env("game-lines", env)
    return (s.lock_collection, s.pending_collection, s.runs_collection)


def reset(env: Mapping[str, str]) -> None:
    """Empty the buckets (landing and staging), every Firestore document, and the dataset (targets recreated empty)."""
    project, bucket, dataset = env["ODDSBATCH_PROJECT"], env["ODDSBATCH_BUCKET"], env["ODDSBATCH_DATASET"]
    endpoint = env["ODDSBATCH_BIGQUERY_ENDPOINT"]
    gcs = clients.storage_client(project)
    blobs = list(gcs.list_blobs(bucket))
    if env.get("ODDSBATCH_STAGING_BUCKET"):
        blobs += list(gcs.list_blobs(env["ODDSBATCH_STAGING_BUCKET"]))
    if blobs:  # one by one: fake-gcs-server does not answer batch requests in the client's format
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda b: b.delete(), blobs))
    clear_firestore_emulator(env["FIRESTORE_EMULATOR_HOST"], project)
    bq = clients.bigquery_client(project, endpoint)
    for t in bq.list_tables(f"{project}.{dataset}"):
        bq.delete_table(t.reference, not_found_ok=True)
    create_tables(project, dataset, endpoint, legacy_dataset_of(env))


def clear_firestore_emulator(host: str, project: str) -> None:
    """Every document of the emulator's database, at once: the emulator's own endpoint for this
    ("Clear your database between tests": DELETE .../emulator/v1/projects/P/databases/(default)/documents,
    https://firebase.google.com/docs/emulator-suite/connect_firestore)."""
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).read()


def describe_tables(env: Mapping[str, str]) -> str:
    """One JSON line per table: partitioning and clustering as the emulator reports them."""
    bq = clients.bigquery_client(env["ODDSBATCH_PROJECT"], env["ODDSBATCH_BIGQUERY_ENDPOINT"])
    lines = []
    for spec in all_tables().values():
        t = bq.get_table(f"{env['ODDSBATCH_PROJECT']}.{env['ODDSBATCH_DATASET']}.{spec.name}")
        lines.append(json.dumps({"table": t.table_id, "partition": t.time_partitioning.field if t.time_partitioning else None,
                                 "require_partition_filter": t.require_partition_filter,
                                 "clustering": t.clustering_fields}))
    return "\n".join(lines)
