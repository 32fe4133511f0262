"""One flat exception hierarchy, and the one place that classifies Google API errors.

The handler's retry contract rests on it: a TransientError propagates (the function answers
5xx and Eventarc retries the event); a BadInputError quarantines one file and the batch goes
on; any other TerminalError is logged and the event is acknowledged.
"""

from __future__ import annotations


class OddsbatchError(Exception):
    """Root of every error oddsbatch raises on purpose."""


class TransientError(OddsbatchError):
    """Worth retrying: BigQuery 5xx, Firestore unavailable, a serialization conflict."""


class TerminalError(OddsbatchError):
    """Retrying the same input cannot succeed."""


class BadInputError(TerminalError):
    """A file that cannot be read as an Odds API response; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SerializationConflict(TransientError):
    """BigQuery's "Could not serialize access to table ... due to concurrent update"."""


# HTTP / gRPC status codes that mean "try again later".
_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
_TRANSIENT_REASONS = {"backendError", "internalError", "rateLimitExceeded", "jobRateLimitExceeded"}
SERIALIZATION_MESSAGE = "Could not serialize access"


def is_serialization_conflict(exc: BaseException) -> bool:
    return SERIALIZATION_MESSAGE in str(exc)


def classify(exc: BaseException) -> OddsbatchError:
    """Map any exception from a Google client (or the network) to Transient or Terminal."""
    if isinstance(exc, OddsbatchError):
        return exc
    if is_serialization_conflict(exc):
        return SerializationConflict(str(exc))
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - the clients are always installed
        gexc = None
    if gexc is not None:
        if isinstance(exc, (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests,
                            gexc.GatewayTimeout, gexc.DeadlineExceeded, gexc.BadGateway,
                            gexc.RetryError, gexc.Aborted)):
            return TransientError(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, gexc.GoogleAPICallError):
            code = getattr(exc, "code", None)
            reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
            if (isinstance(code, int) and code in _TRANSIENT_HTTP) or reasons & _TRANSIENT_REASONS:
                return TransientError(f"{type(exc).__name__}: {exc}")
            return TerminalError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(f"{type(exc).__name__}: {exc}")
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return TransientError(f"{type(exc).__name__}: {exc}")
    except ImportError:  # pragma: no cover
        pass
    return TerminalError(f"{type(exc).__name__}: {exc}")
