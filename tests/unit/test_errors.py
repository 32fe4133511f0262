"""errors.classify, branch by branch: BigQuery's reason table, HTTP codes, network errors."""

import pytest
import requests
from google.api_core import exceptions as g

from oddsbatch import errors as e

DML = "Resources exceeded during query execution: Too many DML statements outstanding against table p:d.t, limit is 20"


def api(code, reason, message="x"):
    return g.from_http_status(code, message, errors=[{"reason": reason, "message": message}])


@pytest.mark.parametrize("exc,job,kind,reason", [
    (api(400, "resourcesExceeded", DML), True, e.BigQueryLimit, "resourcesExceeded"),
    (api(400, "resourcesExceeded", DML), False, e.TransientError, None),
    (api(400, "resourcesExceeded", "Resources exceeded: allotted memory"), True, e.TerminalError, None),
    (api(403, "rateLimitExceeded"), True, e.BigQueryLimit, "rateLimitExceeded"),
    (api(403, "rateLimitExceeded"), False, e.TransientError, None),
    (api(403, "jobRateLimitExceeded"), True, e.BigQueryLimit, "jobRateLimitExceeded"),
    (api(403, "quotaExceeded"), True, e.BigQueryLimit, "quotaExceeded"),
    (api(403, "quotaExceeded"), False, e.TerminalError, None),
    (api(503, "backendError"), True, e.BigQueryUnavailable, "backendError"),
    (api(500, "internalError"), False, e.TransientError, None),
    (g.ServiceUnavailable("down"), True, e.BigQueryUnavailable, "503"),
    (g.ServiceUnavailable("down"), False, e.TransientError, None),
    (g.TooManyRequests("slow down"), True, e.TransientError, None),
    (g.Aborted("aborted"), False, e.TransientError, None),
    (g.RetryError("gave up", None), False, e.TransientError, None),
    (g.Forbidden("denied"), True, e.TerminalError, None),
    (g.BadRequest("Syntax error"), False, e.TerminalError, None),
    (ConnectionResetError("reset"), False, e.TransientError, None),
    (TimeoutError("slow"), False, e.TransientError, None),
    (requests.ConnectionError("refused"), False, e.TransientError, None),
    (ValueError("bug"), False, e.TerminalError, None),
])
def test_classify(exc, job, kind, reason):
    got = e.classify(exc, job=job)
    assert type(got) is kind, (type(got), kind)
    assert isinstance(got, e.RetryInProcess) == (reason is not None)
    if reason is not None:
        assert got.reason == reason and isinstance(got, e.TransientError)


def test_an_oddsbatch_error_is_returned_as_is():
    err = e.BadInputError("truncated")
    assert e.classify(err) is err and e.classify(e.DeadlineReached("late"), job=True).__class__ is e.DeadlineReached


# Each BigQuery conflict text, with where it comes from. Both are a serialization conflict: transient,
# resubmitted in process by warehouse.py (RetryInProcess), then left to Eventarc.
CONFLICT_TEXTS = [
    # https://cloud.google.com/bigquery/docs/troubleshoot-queries ("Conflicting DML statements": "Error
    # string: Could not serialize access to table due to concurrent update"); the exact answer with the
    # table, HTTP 400, reason invalidQuery: confluentinc/kafka-connect-bigquery#279, m-lab/etl-gardener#272
    pytest.param(g.BadRequest("Could not serialize access to table p:d.t due to concurrent update",
                              errors=[{"reason": "invalidQuery"}]), id="could-not-serialize"),
    # dlt-hub/dlt#2892: "400 Query error: Transaction is aborted due to concurrent update against table
    # XYZ" from a MERGE; estuary/connectors#111: "merge error: Query error: Transaction is aborted due to
    # concurrent update against table acmeCo:dataset.flow_checkpoints_v1. Transaction ID: ..."
    pytest.param(g.BadRequest("Query error: Transaction is aborted due to concurrent update against table "
                              "p:d.t. Transaction ID: 61e30eea-0000-2dab-8e60-94eb2c1b1a92 at [24:9]",
                              errors=[{"reason": "invalidQuery"}]), id="transaction-is-aborted"),
]


@pytest.mark.parametrize("exc", CONFLICT_TEXTS)
@pytest.mark.parametrize("job", [True, False])
def test_both_conflict_texts_are_a_serialization_conflict(exc, job):
    got = e.classify(exc, job=job)
    assert type(got) is e.SerializationConflict and isinstance(got, e.TransientError)
    assert got.reason == "serializationConflict" and e.is_serialization_conflict(exc)


def test_another_aborted_transaction_is_not_a_conflict():
    """Only BigQuery's concurrent-update texts: an unrelated invalidQuery stays terminal."""
    exc = g.BadRequest("Transaction is aborted: syntax error at [1:1]", errors=[{"reason": "invalidQuery"}])
    assert type(e.classify(exc, job=True)) is e.TerminalError
