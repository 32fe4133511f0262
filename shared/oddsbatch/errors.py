"""One flat exception hierarchy, and the one place that classifies Google API errors.

The handler's retry contract rests on it: a TransientError propagates (the function answers
5xx and Eventarc retries the event); a BadInputError (or a RejectedData traced to one file)
quarantines that file and the batch goes on. Any other TerminalError is logged with what to
fix (`fix`) and, once the event's pending marker is written, acknowledged: retrying the same
input cannot help until someone fixes the cause, and the marker keeps the work queued for
the next event of the key, the sweep or `oddsbatch reconcile`. Before the marker exists the
event is the only record of its file, so there every error is raised and Eventarc retries.
A RetryInProcess is a
TransientError worth resubmitting the BigQuery job at once, in this invocation, with backoff
(warehouse.py), before it is raised for Eventarc.

BigQuery's errors are classified by their `reason` (the ErrorProto reason), from one table
below, as dlt does: https://cloud.google.com/bigquery/docs/error-messages
"""

from __future__ import annotations


class OddsbatchError(Exception):
    """Root of every error oddsbatch raises on purpose."""


class TransientError(OddsbatchError):
    """Worth retrying: BigQuery 5xx, Firestore unavailable, a serialization conflict."""


class TerminalError(OddsbatchError):
    """Retrying the same input cannot succeed; `fix` says what an operator should change."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix or FIX_UNKNOWN


class BadInputError(TerminalError):
    """A file that cannot be read as an Odds API response; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason, fix="nothing: the file is quarantined with this reason, its batch goes on")
        self.reason = reason


class RejectedData(TerminalError):
    """BigQuery's load job refused the staged rows (reason `invalid`, "Error while reading
    data"): some file of the round holds a value the load cannot take. The holder finds which
    files by loading halves (batch.find_rejected) and quarantines them alone."""

    def __init__(self, message: str):
        super().__init__(message, fix="nothing: the files whose rows the load refuses are quarantined")


class RetryInProcess(TransientError):
    """A BigQuery job that failed for a reason that passes by itself: resubmit it (a new job
    id) after a backoff while the invocation has time left; `reason` is BigQuery's."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class SerializationConflict(RetryInProcess):
    """BigQuery's "Could not serialize access to table ... due to concurrent update", or "Transaction
    is aborted due to concurrent update against table ..."."""

    def __init__(self, message: str, reason: str = "serializationConflict"):
        super().__init__(message, reason)


class BigQueryLimit(RetryInProcess):
    """A short-term BigQuery limit: the per-table DML queue, rate limits, job quotas."""


class BigQueryUnavailable(RetryInProcess):
    """BigQuery's backend failed the job or its insertion (backendError, 5xx)."""


class DeadlineReached(TransientError):
    """The invocation has no time left for the work: leave it to Eventarc's retry."""


# HTTP / gRPC status codes that mean "try again later".
_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
# BigQuery's two answers to a DML statement conflict (https://cloud.google.com/bigquery/docs/
# data-manipulation-language, "DML statement conflicts"; troubleshoot-queries, "Conflicting DML
# statements": "Could not serialize access to table due to concurrent update"); the second is
# BigQuery's answer met in public reports (dlt-hub/dlt#2892, estuary/connectors#111): "Transaction is
# aborted due to concurrent update against table ...". Both pass once the other statement is done.
SERIALIZATION_MESSAGES = ("Could not serialize access", "Transaction is aborted due to concurrent update")
# https://cloud.google.com/bigquery/docs/data-manipulation-language ("UPDATE, DELETE, MERGE DML
# concurrency"): past the per-table queue of mutating DML statements, BigQuery fails the statement
# with reason resourcesExceeded and this message; every other resourcesExceeded (memory, too
# complex) fails the same way again.
DML_OUTSTANDING_MESSAGE = "Too many DML statements outstanding"

# reason -> (class when the error came from a BigQuery job or its insertion, class otherwise).
# rateLimitExceeded is a short-term limit: retry after a few seconds with exponential backoff;
# quotaExceeded a longer-term one, retried in-process only for jobs (the job quotas the issue
# names; other calls do not retry it): https://cloud.google.com/bigquery/docs/troubleshoot-quotas
# backendError: "If the job completes but includes an error object that contains backendError,
# the job failed. You can safely retry the job"; on jobs.insert it is unclear whether the job
# was created, so the insertion is retried with the same job id:
# https://cloud.google.com/bigquery/docs/error-messages
_REASONS: dict[str, tuple[type[OddsbatchError], type[OddsbatchError]]] = {
    "rateLimitExceeded": (BigQueryLimit, TransientError),
    "jobRateLimitExceeded": (BigQueryLimit, TransientError),
    "quotaExceeded": (BigQueryLimit, TerminalError),
    "backendError": (BigQueryUnavailable, TransientError),
    "internalError": (BigQueryUnavailable, TransientError),
}


def is_serialization_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return any(message in text for message in SERIALIZATION_MESSAGES)


def _reasons(exc: BaseException) -> list[str]:
    return [e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)]


def is_rejected_data(exc: BaseException | None) -> bool:
    """A load job that failed on the data itself: BigQuery's reason `invalid` ("Error while
    reading data ..."). https://cloud.google.com/bigquery/docs/error-messages"""
    return exc is not None and "invalid" in _reasons(exc)


def is_missing_uri(exc: BaseException | None) -> bool:
    """A load job from Cloud Storage whose object does not exist: reason `notFound`, "Not found:
    URI gs://..." (the job's errorResult, as in googleapis/google-cloud-node#1177)."""
    return exc is not None and "notFound" in _reasons(exc) and "URI gs://" in str(exc)


FIX_UNKNOWN = ("an unexpected error: read it, fix the cause (or report it), then run "
               "`oddsbatch reconcile --date D`; the pending markers keep the work queued")
# What an operator changes when a Google API answers with one of these (by exception class).
_FIXES = {
    "NotFound": ("a resource the configuration names does not exist (dataset, table, bucket or Firestore "
                 "database): check ODDSBATCH_PROJECT, ODDSBATCH_DATASET, ODDSBATCH_TABLE, the quarantine "
                 "and staging buckets (ODDSBATCH_STAGING_BUCKET), and run `terraform apply`"),
    "Forbidden": ("the function's service account lacks a role: see terraform/iam.tf and run `terraform apply`"),
    "PermissionDenied": ("the function's service account lacks a role: see terraform/iam.tf and run `terraform apply`"),
    "Unauthorized": "no valid credentials: check the function's service account",
    "Unauthenticated": "no valid credentials: check the function's service account",
    "BadRequest": ("BigQuery or Firestore refused the request: the tables may differ from "
                   "shared/oddsbatch/schemas/ (run `terraform apply`), or it is a bug: report it"),
}


def classify(exc: BaseException, job: bool = False) -> OddsbatchError:
    """Map any exception from a Google client (or the network) to Transient or Terminal.
    `job`: it came from inserting or waiting on a BigQuery job, where the short-term limits
    and backend failures are RetryInProcess (warehouse.py retries them before raising)."""
    if isinstance(exc, OddsbatchError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if is_serialization_conflict(exc):
        return SerializationConflict(str(exc))
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - the clients are always installed
        gexc = None
    if gexc is not None and isinstance(exc, gexc.GoogleAPICallError):
        reasons = _reasons(exc)
        for reason in reasons:
            if reason == "resourcesExceeded" and DML_OUTSTANDING_MESSAGE in str(exc):
                return BigQueryLimit(text, reason) if job else TransientError(text)
            if reason in _REASONS:
                kind = _REASONS[reason][0 if job else 1]
                return kind(text, reason) if issubclass(kind, RetryInProcess) else kind(text)
        code = getattr(exc, "code", None)
        if isinstance(code, int) and code in _TRANSIENT_HTTP:
            if job and code >= 500:
                return BigQueryUnavailable(text, str(code))
            return TransientError(text)
        if isinstance(exc, (gexc.RetryError, gexc.DeadlineExceeded, gexc.Aborted)):
            return TransientError(text)
        return TerminalError(text, fix=_FIXES.get(type(exc).__name__, ""))
    if gexc is not None and isinstance(exc, gexc.RetryError):
        return TransientError(text)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(text)
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return TransientError(text)
    except ImportError:  # pragma: no cover
        pass
    return TerminalError(text)
