"""Google clients, created once per process and emulator-aware.

Real GCP: application default credentials. Locally: STORAGE_EMULATOR_HOST and
FIRESTORE_EMULATOR_HOST are honoured by the clients themselves; BigQuery has no such
variable, so ODDSBATCH_BIGQUERY_ENDPOINT points it at the emulator with anonymous
credentials. Imports are lazy so that merely importing this module costs nothing.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


def _cached(key: tuple, factory):
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def reset() -> None:
    """Forget every client (tests that change endpoints between runs)."""
    with _lock:
        _cache.clear()


def storage_client(project: str):
    def make():
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=project, credentials=AnonymousCredentials())
        return storage.Client(project=project)

    return _cached(("storage", project, os.environ.get("STORAGE_EMULATOR_HOST")), make)


def firestore_client(project: str, database: str = "(default)"):
    def make():
        from google.cloud import firestore

        if os.environ.get("FIRESTORE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            return firestore.Client(project=project, database=database, credentials=AnonymousCredentials())
        return firestore.Client(project=project, database=database)

    return _cached(("firestore", project, database, os.environ.get("FIRESTORE_EMULATOR_HOST")), make)


# The chunk a load job's resumable upload reads from its file at a time. google-cloud-bigquery
# 3.47.0 reads 100 MB (`client._DEFAULT_CHUNKSIZE`, read at each upload): a round's staged file
# would then sit in memory up to 100 MB at once. A chunk other than the last must be a multiple of
# 256 KiB in Google's resumable upload protocol (https://cloud.google.com/storage/docs/performing-resumable-uploads,
# the protocol BigQuery's upload endpoint speaks; googleapis/python-bigquery#775 on the default).
LOAD_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024


def bigquery_client(project: str, endpoint: str | None = None, location: str | None = None):
    endpoint = endpoint or os.environ.get("ODDSBATCH_BIGQUERY_ENDPOINT") or None

    def make():
        from google.cloud import bigquery
        from google.cloud.bigquery import client as bigquery_client_module

        bigquery_client_module._DEFAULT_CHUNKSIZE = LOAD_UPLOAD_CHUNK_BYTES  # tests/unit/test_reading.py pins it

        if endpoint:
            from google.auth.credentials import AnonymousCredentials

            return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                                   client_options={"api_endpoint": endpoint}, location=location)
        return bigquery.Client(project=project, location=location)

    return _cached(("bigquery", project, endpoint, location), make)
