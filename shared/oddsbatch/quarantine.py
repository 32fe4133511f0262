"""Quarantine: a file that cannot be merged is copied aside with its reason, and never lost.

The copy goes to ODDSBATCH_QUARANTINE_BUCKET (or the landing bucket) under the quarantine
prefix, with the reason, source bucket and source generation as object metadata; the original
stays where it landed. Only a copy that exists counts as done.
"""

from __future__ import annotations

from . import logs
from .clients import storage_client
from .config import Settings
from .errors import TransientError


def quarantine(settings: Settings, bucket: str, name: str, generation: int, reason: str) -> None:
    """Copy an unreadable object aside with its reason; the original stays where it was.

    A copy that fails is a TransientError, never a skip: a wrong ODDSBATCH_QUARANTINE_BUCKET,
    a missing role or an outage must not drop the file silently. Only a source object that is
    gone (deleted, or overwritten by a newer generation) counts as done."""
    from google.api_core.exceptions import NotFound

    client = storage_client(settings.project)
    source_bucket = client.bucket(bucket)
    target_bucket = client.bucket(settings.quarantine_bucket or bucket)
    target_name = f"{settings.quarantine_prefix}{name}"
    try:
        copy = source_bucket.copy_blob(source_bucket.blob(name), target_bucket, target_name,
                                       source_generation=generation or None)
        copy.metadata = {"oddsbatch-reason": reason[:1024], "oddsbatch-source-bucket": bucket,
                         "oddsbatch-source-generation": str(generation)}
        copy.patch()
    except NotFound as missing:
        if _source_exists(source_bucket, name, generation):  # the target bucket is what is missing
            raise TransientError(f"quarantine copy of gs://{bucket}/{name} to gs://{target_bucket.name}/ failed: "
                                 f"{missing}") from missing
        logs.log("quarantine_source_gone", severity="WARNING", object=name, generation=generation, reason=reason)
        return
    except Exception as exc:
        raise TransientError(f"quarantine copy of gs://{bucket}/{name} to gs://{target_bucket.name}/ failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    logs.log("quarantined", severity="WARNING", endpoint=settings.endpoint, object=name, generation=generation,
             reason=reason, quarantine_object=f"gs://{target_bucket.name}/{target_name}")


def _source_exists(source_bucket, name: str, generation: int) -> bool:
    try:
        return source_bucket.blob(name, generation=generation or None).exists()
    except Exception as exc:  # cannot tell: keep the file queued
        raise TransientError(f"checking gs://{source_bucket.name}/{name}: {type(exc).__name__}: {exc}") from exc
