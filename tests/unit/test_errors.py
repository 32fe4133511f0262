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
    (g.BadRequest("Could not serialize access to table p:d.t due to concurrent update"), True,
     e.SerializationConflict, "serializationConflict"),
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
