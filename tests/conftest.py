"""Root fixtures: every test starts from an environment without ODDSBATCH_* or emulator variables.

A developer's shell (or a sourced .oddsbatch/local.env) must not change what a unit test sees;
integration tests put the session stack's variables back (tests/integration/conftest.py).
"""

from __future__ import annotations

import os

import pytest

ISOLATED_PREFIXES = ("ODDSBATCH_",)
ISOLATED_NAMES = (
    "STORAGE_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def isolated_names(environ=None) -> list[str]:
    environ = os.environ if environ is None else environ
    return [k for k in environ if k.startswith(ISOLATED_PREFIXES) or k in ISOLATED_NAMES]


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch):
    for name in isolated_names():
        monkeypatch.delenv(name, raising=False)
    from oddsbatch import clients

    clients.reset()
    yield
    clients.reset()


@pytest.fixture(scope="session")
def googlesql():
    """GoogleSQL checkers by (project, dataset), sharing one ZetaSQL analyzer per test run
    (tests/googlesql.py; starting it costs ~10-40 s of CPU, each analysis milliseconds)."""
    from tests.googlesql import GoogleSQL

    checkers: dict[tuple[str, str], GoogleSQL] = {}

    def checker(project: str = "test-project", dataset: str = "odds_api") -> GoogleSQL:
        if (project, dataset) not in checkers:
            checkers[(project, dataset)] = GoogleSQL(project, dataset)
        return checkers[(project, dataset)]

    return checker
