"""An event the function keeps refusing is dead-lettered by Pub/Sub, and lands after its replay.

A stack of its own whose functions answer 503 to every event (ODDSBATCH_FAULT_FAIL_AT=firestore:
each Firestore call fails as a transient fault, so the handler raises and the function answers
5xx). The storage trigger subscriptions carry a dead-letter policy (delivery.py) with the fewest
attempts Pub/Sub allows (5); once a message has used them, Pub/Sub forwards it to the
dead-letter topic (https://cloud.google.com/pubsub/docs/dead-letter-topics), whose pull
subscription keeps it. `oddsbatch reconcile --from-dead-letters` run as an operator would (this
process has no faults) reconciles the dates those messages name, acknowledges them, and the rows land.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date

import pytest

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local import delivery
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration
ATTEMPTS = delivery.MIN_DELIVERY_ATTEMPTS
CLI = [sys.executable, "-m", "oddsbatch.cli"]


@pytest.fixture(scope="module")
def refusing_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("oddsbatch-refusing"), settle_seconds=0.3, max_delivery_attempts=ATTEMPTS,
               extra_env={"ODDSBATCH_FAULT_FAIL_AT": "firestore"})
    st.start()
    try:
        yield st
    finally:
        st.stop()


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_refused_event_is_dead_lettered_after_the_configured_attempts_and_lands_after_replay(refusing_stack):
    stack = refusing_stack
    day = date(2025, 2, 3)
    files = list(synth.synthesize_day(day, games=1, snapshots=1, seed=5))
    generations = upload_all(stack, files)
    subscription = stack.env["ODDSBATCH_DEAD_LETTER_SUBSCRIPTION"]
    host = stack.env["PUBSUB_EMULATOR_HOST"]
    letters = _wait(lambda: (lambda m: m if len(m) >= len(files) else None)(
        delivery.peek_dead_letters(subscription, host=host)), 180, "every event on the dead-letter subscription")
    assert sorted(m.attributes["objectId"] for m in letters) == sorted(generations)
    # each was pushed exactly the configured number of times before Pub/Sub gave up on it
    assert {m.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] for m in letters} == {str(ATTEMPTS)}
    status = stack.bridge_status()
    assert status["failed"] == len(files) and status["retrying"] == 0 and status["in_flight"] == 0
    refused = [line for line in stack.log_text("bridge").splitlines() if '"outcome": "failed"' in line]
    assert all(f'"attempt": {ATTEMPTS},' in line for line in refused) and len(refused) == len(files)
    for endpoint in ENDPOINT_TABLES:  # nothing landed
        assert table_rows(stack, endpoint, day.isoformat()) == []

    env = {**os.environ, **stack.env}
    r = subprocess.run([*CLI, "reconcile", "--from-dead-letters", subscription, "--state-dir", str(stack.state_dir)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        got = Counter(comparable(row, spec) for row in table_rows(stack, endpoint, day.isoformat()))
        assert got == expected_rows(files, generations, endpoint), endpoint
    assert delivery.peek_dead_letters(subscription, host=host) == []  # acknowledged once their dates landed


# -- the sweep drains the dead letters itself -----------------------------------------------------
@pytest.fixture(scope="module")
def down_stack(tmp_path_factory):
    """Storage events refused at the bridge (the functions are down for them: no POST), so Pub/Sub
    dead-letters each after its attempts; the sweep messages still reach the functions."""
    st = Stack(tmp_path_factory.mktemp("oddsbatch-down"), settle_seconds=0.3, max_delivery_attempts=ATTEMPTS,
               sweep_seconds=3.0, bridge_args=["--refuse-storage"])
    st.start()
    try:
        yield st
    finally:
        st.stop()


def test_the_sweep_replays_dead_letters_and_their_date_lands_with_no_operator_command(down_stack):
    stack = down_stack
    day = date(2024, 11, 5)  # far older than the sweep's own days: only the dead letters name it
    files = list(synth.synthesize_day(day, games=1, snapshots=1, seed=9))
    generations = upload_all(stack, files)
    subscription = stack.env["ODDSBATCH_DEAD_LETTER_SUBSCRIPTION"]

    def landed():
        return all(Counter(comparable(row, table_for_endpoint(e)) for row in table_rows(stack, e, day.isoformat()))
                   == expected_rows(files, generations, e) for e in ENDPOINT_TABLES)

    _wait(landed, 240, "the date to land")
    # every event dead-lettered at both functions, none delivered
    assert stack.bridge_status()["failed"] == len(files) * 2
    assert '"outcome": "delivered"' not in stack.log_text("bridge")
    drained = lambda: [line for fn in ("game_lines", "player_props") for line in stack.log_text(fn).splitlines()  # noqa: E731
                       if '"sweep_dead_letters"' in line and day.isoformat() in line]
    _wait(drained, 60, "the sweep's log of the dead letters it reconciled")  # logged once the drain ends
    _wait(lambda: delivery.peek_dead_letters(subscription, host=stack.env["PUBSUB_EMULATOR_HOST"]) == [], 60,
          "the dead letters acknowledged")
