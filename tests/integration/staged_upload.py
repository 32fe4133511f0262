"""Stage NDJSON bytes as the holder does: one object in the stack's staging bucket, loaded from its
gs:// URI by Warehouse.stage (for tests that drive the warehouse without a holder)."""

from __future__ import annotations

from oddsbatch import clients


def stage_bytes(warehouse, run_id: str, data: bytes, **kwargs) -> str:
    """Warehouse.stage of `data`, written first to staging/tests/<run_id>.ndjson; the staging table id."""
    bucket = warehouse.settings.staging_bucket
    name = f"tests/{run_id}.ndjson"
    clients.storage_client(warehouse.settings.project).bucket(bucket).blob(name).upload_from_string(
        data, content_type="application/x-ndjson")
    return warehouse.stage(run_id, [f"gs://{bucket}/{name}"], **kwargs)
