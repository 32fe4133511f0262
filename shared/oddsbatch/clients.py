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


def bigquery_client(project: str, endpoint: str | None = None, location: str | None = None):
    endpoint = endpoint or os.environ.get("ODDSBATCH_BIGQUERY_ENDPOINT") or None

    def make():
        from google.cloud import bigquery

        if endpoint:
            from google.auth.credentials import AnonymousCredentials

            return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                                   client_options={"api_endpoint": endpoint}, location=location)
        return bigquery.Client(project=project, location=location)

    return _cached(("bigquery", project, endpoint, location), make)
