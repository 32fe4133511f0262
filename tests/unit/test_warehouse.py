"""The job runner's retry contract, with a stand-in BigQuery client (no emulator).

The emulator never raises serialization conflicts (it runs writes to one table one at a
time), so this path is tested by injection: resubmitted as a NEW job, with backoff. The same
loop retries BigQuery's short-term limits, bounded by the invocation's deadline.
"""

from datetime import date

import pytest
from google.api_core.exceptions import BadRequest, Conflict, Forbidden, ServiceUnavailable

from oddsbatch.config import Settings
from oddsbatch.deadline import Deadline
from oddsbatch.errors import BigQueryLimit, DeadlineReached, SerializationConflict, TerminalError, TransientError
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse, staging_table_name

CONFLICT = "Could not serialize access to table p:d.t due to concurrent update"


class Job:
    def __init__(self, job_id, error=None):
        self.job_id, self.error = job_id, error
        self.dml_stats = type("Stats", (), {"inserted_row_count": 3, "updated_row_count": 1})()
        self.num_dml_affected_rows = 4
        self.state = "DONE"
        self.timeouts = []

    def result(self, timeout=None):
        self.timeouts.append(timeout)
        if self.error:
            raise self.error

    def reload(self):
        pass


class Client:
    def __init__(self, errors):
        self.errors = list(errors)
        self.job_ids = []
        self.jobs = {}
        self.cancelled = []

    def query(self, statement, job_config=None, job_id=None, job_retry=None):
        assert "MERGE" in statement and job_retry is None
        self.job_ids.append(job_id)
        error = self.errors.pop(0) if self.errors else None
        if isinstance(error, InsertError):  # jobs.insert itself fails; error.created: the job exists anyway
            if error.created:
                self.jobs[job_id] = Job(job_id)
            raise error.error
        if job_id in self.jobs:
            raise Conflict(f"Already Exists: Job p:{job_id}")
        self.jobs[job_id] = job = error if isinstance(error, Job) else Job(job_id, error)
        return job

    def get_job(self, job_id, location=None):
        return self.jobs[job_id]

    def cancel_job(self, job_id, location=None):
        self.cancelled.append(job_id)


class InsertError:
    def __init__(self, error, created):
        self.error, self.created = error, created


def warehouse(errors, attempts=5, deadline=None, jitter=1.0):
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_MERGE_ATTEMPTS": str(attempts)})
    sleeps = []
    wh = Warehouse(settings, table_for_endpoint("game-lines"), client=Client(errors), sleep=sleeps.append,
                   deadline=deadline, jitter=lambda: jitter)
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


@pytest.mark.parametrize("error,kind", [(Forbidden("access denied"), TerminalError),
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


DML_LIMIT = BadRequest("Resources exceeded during query execution: Too many DML statements outstanding against "
                       "table p:d.t, limit is 20", errors=[{"reason": "resourcesExceeded", "message": "..."}])


def limit(reason, code=403):
    from google.api_core.exceptions import from_http_status

    return from_http_status(code, f"{reason} (test)", errors=[{"reason": reason, "message": "x"}])


@pytest.mark.parametrize("error", [DML_LIMIT, limit("rateLimitExceeded"), limit("jobRateLimitExceeded"),
                                   limit("quotaExceeded"), limit("backendError", 503), ServiceUnavailable("backend")])
def test_bigquery_limits_and_backend_failures_of_a_job_are_retried_as_new_jobs(error):
    wh, sleeps = warehouse([error, error])
    result = wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert result.attempts == 3 and len(set(wh.client.job_ids)) == 3 and sleeps == [1.0, 2.0]
    assert sum(result.retried.values()) == 2 and wh.retried == result.retried


def test_backoff_is_jittered_between_half_and_the_whole_delay():
    wh, sleeps = warehouse([DML_LIMIT] * 3, jitter=0.0)
    wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert sleeps == [0.5, 1.0, 2.0]
    wh, _ = warehouse([])
    assert [wh._backoff(n) for n in (1, 6, 12)] == [1.0, 30.0, 30.0]  # capped at 30 s


def test_limits_are_retried_until_the_deadline_then_raised_transient():
    clock = [0.0]
    deadline = Deadline(60.0, clock=lambda: clock[0])  # 54 s usable (6 s reserve)
    wh, sleeps = warehouse([DML_LIMIT] * 100, deadline=deadline)
    wh.sleep = lambda s: (sleeps.append(s), clock.__setitem__(0, clock[0] + s))
    with pytest.raises(BigQueryLimit) as info:
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert isinstance(info.value, TransientError) and info.value.reason == "resourcesExceeded"
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]  # 31 s slept; the next 30 s pause would pass the deadline
    assert len(wh.client.job_ids) == 6


def test_every_wait_is_bounded_by_the_time_left():
    clock = [100.0]
    deadline = Deadline(540.0, clock=lambda: clock[0], started=0.0)
    wh, _ = warehouse([], deadline=deadline)
    wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    job = wh.client.jobs["oddsbatch_odds_api_game_lines_run1_merge_1"]
    assert job.timeouts == [430.0]  # 540 - 10 s reserve - 100 s gone


def test_a_job_unfinished_at_the_deadline_is_cancelled_not_resubmitted():
    from concurrent.futures import TimeoutError as FutureTimeout

    queued = Job("oddsbatch_odds_api_game_lines_run1_merge_1", FutureTimeout())
    queued.state = "PENDING"
    wh, sleeps = warehouse([queued])
    with pytest.raises(DeadlineReached) as info:
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert isinstance(info.value, TransientError)
    assert wh.client.cancelled == [queued.job_id] and len(wh.client.job_ids) == 1 and sleeps == []


def test_no_job_is_submitted_without_time_left():
    deadline = Deadline(540.0, clock=lambda: 539.0, started=0.0)
    wh, _ = warehouse([], deadline=deadline)
    with pytest.raises(DeadlineReached):
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert wh.client.job_ids == []


def test_a_5xx_on_insert_retries_the_same_job_id_and_a_409_resumes_the_job():
    """The insert answered 503 but BigQuery had created the job: the retried insert with the
    same id meets 409 and resumes that job instead of running a second MERGE."""
    wh, sleeps = warehouse([InsertError(ServiceUnavailable("insert"), created=True)])
    result = wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert wh.client.job_ids == ["oddsbatch_odds_api_game_lines_run1_merge_1"] * 2
    assert result.attempts == 1 and result.job_id == "oddsbatch_odds_api_game_lines_run1_merge_1"
    assert sleeps == [1.0]


def test_a_5xx_on_insert_of_a_job_never_created_inserts_it_again():
    wh, sleeps = warehouse([InsertError(ServiceUnavailable("insert"), created=False)])
    result = wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert wh.client.job_ids == ["oddsbatch_odds_api_game_lines_run1_merge_1"] * 2 and result.attempts == 1


def test_a_polling_failure_on_an_unfinished_job_waits_again_on_the_same_job():
    class Flaky(Job):
        def result(self, timeout=None):
            self.timeouts.append(timeout)
            if len(self.timeouts) == 1:
                self.state = "RUNNING"
                raise ServiceUnavailable("getQueryResults")
            self.state = "DONE"

    job = Flaky("oddsbatch_odds_api_game_lines_run1_merge_1")
    wh, sleeps = warehouse([job])
    result = wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert result.attempts == 1 and len(job.timeouts) == 2 and len(wh.client.job_ids) == 1


def test_a_resources_exceeded_that_is_not_the_dml_queue_is_terminal():
    memory = BadRequest("Resources exceeded during query execution: The query could not be executed in the "
                        "allotted memory.", errors=[{"reason": "resourcesExceeded"}])
    wh, sleeps = warehouse([memory])
    with pytest.raises(TerminalError):
        wh.merge("run1", "p.d.staging", date(2025, 1, 21))
    assert len(wh.client.job_ids) == 1 and sleeps == []
