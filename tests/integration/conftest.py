"""The local stack for integration tests: started once per session in a temp state dir,
stopped by PID at the end (also at interpreter exit, should pytest be interrupted).

Fixtures:
  stack        oddsbatch.local.stack.Stack, up: .env, .urls, .bucket/.dataset/.project,
               .storage()/.firestore()/.bigquery() clients, .wait_idle(expected_events=N),
               .log_text(name), .reset(), .bridge_status()
  clean_stack  the same, after emptying the bucket, Firestore and the dataset
Every test here runs with the stack's variables in os.environ (after the root isolation).
"""

from __future__ import annotations

import atexit

import pytest

from oddsbatch import clients
from oddsbatch.local.stack import Stack

SETTLE_SECONDS = 0.5


def pytest_collection_modifyitems(items):
    """Tests marked after_integration run after every other test of the session (they read
    back what the others sent to the stack)."""
    items.sort(key=lambda item: item.get_closest_marker("after_integration") is not None)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("oddsbatch-stack"), settle_seconds=SETTLE_SECONDS)
    atexit.register(st.stop)
    st.start()
    print(f"\nlocal stack up in {st.started_seconds}s, logs in {st.logs}")
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(autouse=True)
def _stack_env(_isolate_env, stack, monkeypatch):
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    clients.reset()
    yield


@pytest.fixture
def clean_stack(stack):
    stack.reset()
    return stack
