"""Cloud Function (2nd gen) entry point `game_lines`: GCS object finalize -> BigQuery, batched.

All logic lives in the vendored `oddsbatch` package; this file only binds the endpoint.
Configuration: ODDSBATCH_* environment variables (see the README).
"""

import functions_framework
from cloudevents.http.event import CloudEvent

from oddsbatch.handler import make_handler

_handle = make_handler("game-lines")


@functions_framework.cloud_event
def game_lines(cloud_event: CloudEvent) -> None:
    _handle(cloud_event)
