"""The installed `oddsbatch` package declares every Google client its modules import.

`oddsbatch reconcile --from-dead-letters` imports google.cloud.pubsub_v1: without
google-cloud-pubsub in pyproject.toml's dependencies, an installed package failed on that flag.
The local stack (oddsbatch/local/) is development-only and left out.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "shared" / "oddsbatch"
IMPORT = re.compile(r"^\s*from google\.cloud import (\w+)", re.M)
# module imported -> the distribution that provides it
DISTRIBUTION = {"bigquery": "google-cloud-bigquery", "firestore": "google-cloud-firestore",
                "storage": "google-cloud-storage", "pubsub_v1": "google-cloud-pubsub"}


def imported_clients() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "local" in path.relative_to(PACKAGE).parts:
            continue
        found.update(IMPORT.findall(path.read_text()))
    return found


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}


def test_every_google_client_the_package_imports_is_a_dependency():
    clients = imported_clients()
    assert "pubsub_v1" in clients  # reconcile --from-dead-letters
    missing = sorted(DISTRIBUTION[c] for c in clients if DISTRIBUTION[c] not in declared())
    assert missing == []


def test_each_dependency_is_pinned_in_constraints():
    pins = {line.split("==")[0].lower() for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    assert declared() <= pins, sorted(declared() - pins)
