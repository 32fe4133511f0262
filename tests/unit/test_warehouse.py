"""The MERGE runner's retry contract, with a stand-in BigQuery client (no emulator).

The emulator never raises serialization conflicts (it runs writes to one table one at a
time), so this path is tested by injection: resubmitted as a NEW job, with backoff.
"""

from datetime import date

import pytest
from google.api_core.exceptions import BadRequest, Forbidden, ServiceUnavailable

from oddsbatch.config import Settings
from oddsbatch.errors import SerializationConflict, TerminalError, TransientError
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse, staging_table_name

CONFLICT = "Could not serialize access to table p:d.t due to concurrent update"


class Job:
    def __init__(self, job_id, error=None):
        self.job_id, self.error = job_id, error
        self.dml_stats = type("Stats", (), {"inserted_row_count": 3, "updated_row_count": 1})()
        self.num_dml_affected_rows = 4

    def result(self):
        if self.error:
            raise self.error


class Client:
    def __init__(self, errors):
        self.errors = list(errors)
        self.job_ids = []

    def query(self, statement, job_config=None, job_id=None, job_retry=None):
        assert "MERGE" in statement and job_retry is None
        self.job_ids.append(job_id)
        return Job(job_id, self.errors.pop(0) if self.errors else None)


def warehouse(errors, attempts=5):
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_MERGE_ATTEMPTS": str(attempts)})
    sleeps = []
    wh = Warehouse(settings, table_for_endpoint("game-lines"), client=Client(errors), sleep=sleeps.append)
    return wh, sleeps


def test_serialization_conflict_is_resubmitted_as_a_new_job_with_backoff():
    wh, sleeps = warehouse([BadRequest(CONFLICT), BadRequest(CONFLICT)])
    result = wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert result.attempts == 3 and result.inserted == 3 and result.updated == 1
    assert wh.client.job_ids == [f"oddsbatch_odds_api_game_lines_run1_merge_{i}" for i in (1, 2, 3)]
    assert len(set(wh.client.job_ids)) == 3  # waiting again on a failed job would change nothing
    assert sleeps == [1.0, 2.0]


def test_conflicts_beyond_the_attempts_raise_transient():
    wh, sleeps = warehouse([BadRequest(CONFLICT)] * 3, attempts=3)
    with pytest.raises(SerializationConflict) as info:
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert isinstance(info.value, TransientError)
    assert len(wh.client.job_ids) == 3 and sleeps == [1.0, 2.0]


@pytest.mark.parametrize("error,kind", [(ServiceUnavailable("backend"), TransientError),
                                        (Forbidden("access denied"), TerminalError),
                                        (BadRequest("Syntax error"), TerminalError)])
def test_other_errors_are_classified_once_and_not_retried(error, kind):
    wh, sleeps = warehouse([error])
    with pytest.raises(kind):
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert len(wh.client.job_ids) == 1 and sleeps == []


def test_injected_conflicts_come_through_the_same_path(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_FAULT_MERGE_CONFLICTS", "2")
    wh, sleeps = warehouse([])
    assert wh.merge("run9", "p.d.staging", date(2025, 1, 21)).attempts == 3
    assert sleeps == [1.0, 2.0]


def test_staging_names():
    assert staging_table_name(table_for_endpoint("player-props"), "ab-12") == "_staging_odds_api_player_props_ab_12"
