"""Eventarc's part of the local event path: a Pub/Sub push in, a CloudEvent POSTed to a function out.

The transport is Google's Pub/Sub emulator (stack.py starts it): fake-gcs-server publishes each
object-finalize notification to the GCS topic, the bridge's sweep timer publishes Cloud
Scheduler's message to the sweep topic, and each function has a push subscription on each topic
(delivery.py: ack deadline, maximum delivery attempts and dead-letter topic as deploy.sh sets them
in production). Every push subscription pushes to this process at /push/<function>/<kind>. The
bridge converts the push into the binary-mode CloudEvent Eventarc would send, POSTs it to the
function and answers the push with the function's status: a non-2xx answer (or no answer) makes
Pub/Sub redeliver, and after the subscription's maximum attempts forward the message to the
dead-letter topic. Retries, redelivery and dead-lettering are Pub/Sub's; none are written here.

CloudEvents, as Eventarc formats them (https://cloud.google.com/eventarc/docs/cloudevents-json):
  storage  ce-type google.cloud.storage.object.v1.finalized, ce-source
           //storage.googleapis.com/projects/_/buckets/BUCKET, ce-subject objects/NAME,
           data = the object resource (the notification's payload, payloadFormat JSON_API_V1)
  sweep    ce-type google.cloud.pubsub.topic.v1.messagePublished, ce-source
           //pubsub.googleapis.com/projects/P/topics/TOPIC, data = {"message": ..., "subscription": ...}

Chaos: `--duplicate-rate R` POSTs a seeded fraction R of the storage events a second time (same
ce-id) shortly after the first, as an at-least-once transport may; the push is answered once both
POSTs did, 2xx only when both were, so a refused (crashed) twin is redelivered as Pub/Sub would. `--no-retry` plays a trigger with retries off (a single delivery attempt):
the push is acknowledged whatever the function answered, and a refusal counts as failed.

GET /status -> {"received" (distinct storage messages), "delivered" (2xx POSTs), "in_flight",
"retrying" (messages refused and not yet delivered nor dead-lettered), "failed" (dead-lettered,
or refused with --no-retry), "duplicates", "attempts", "instance", "targets"}.
GET /sweep -> {"period", "published", "sweeps" (sweep messages every function answered), "last_started",
"last_finished", "last_status"}: kept out of /status so `oddsbatch wait` is not disturbed by it.

    python -m oddsbatch.local.bridge --status-port S --project P --target game_lines=URL ... \
        [--max-attempts N] [--sweep-seconds S] [--duplicate-rate R --seed K] [--no-retry]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import delivery

HOST = "127.0.0.1"
STORAGE_CE_TYPES = {  # notification eventType -> CloudEvent type
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}
SWEEP_CE_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
ENV_PREFIX = "ODDSBATCH_BRIDGE_"


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def storage_event(push: dict) -> tuple[dict, bytes]:
    """(headers, body) of the binary-mode CloudEvent for one GCS notification push."""
    message = push["message"]
    attributes = message.get("attributes") or {}
    data = base64.b64decode(message.get("data") or "")
    try:
        resource = json.loads(data or b"{}")
    except ValueError:
        resource = {}
    bucket = attributes.get("bucketId") or resource.get("bucket", "")
    name = attributes.get("objectId") or resource.get("name", "")
    event_type = attributes.get("eventType", "OBJECT_FINALIZE")
    headers = {
        "ce-id": message["messageId"],
        "ce-specversion": "1.0",
        "ce-type": STORAGE_CE_TYPES.get(event_type, event_type),
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-subject": f"objects/{name}",
        "ce-time": resource.get("updated") or resource.get("timeCreated") or message.get("publishTime") or _now_rfc3339(),
        "content-type": "application/json",
    }
    return headers, data


def pubsub_event(push: dict, topic: str) -> tuple[dict, bytes]:
    """(headers, body) of the messagePublished CloudEvent for a push from a subscription of `topic`."""
    message = push["message"]
    headers = {"ce-id": message["messageId"], "ce-specversion": "1.0", "ce-type": SWEEP_CE_TYPE,
               "ce-source": f"//pubsub.googleapis.com/{topic}",
               "ce-time": message.get("publishTime") or _now_rfc3339(), "content-type": "application/json"}
    return headers, json.dumps({"message": message, "subscription": push.get("subscription", "")}).encode()


class Bridge:
    def __init__(self, targets: dict[str, str], *, project: str, max_attempts: int = delivery.MAX_DELIVERY_ATTEMPTS,
                 retry: bool = True, timeout: float = delivery.ACK_DEADLINE_SECONDS, duplicate_rate: float = 0.0,
                 duplicate_delay: float = 0.2, seed: int = 0, refuse_storage: bool = False, out=None):
        if not targets:
            raise ValueError("the bridge needs at least one --target FUNCTION=URL")
        self.targets = dict(targets)
        self.project = project
        self.max_attempts, self.retry, self.timeout = max_attempts, retry, timeout
        self.refuse_storage = refuse_storage  # tests: every storage push answered 503, no POST
        self.duplicate_rate, self.duplicate_delay = duplicate_rate, duplicate_delay
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.c = dict(received=0, delivered=0, in_flight=0, retrying=0, failed=0, duplicates=0, attempts=0)
        self._seen: set[str] = set()            # storage message ids
        self._tries: dict[tuple, int] = {}      # (subscription, message id) -> pushes so far
        self._refused: set[tuple] = set()       # (subscription, message id) last answered non-2xx
        self._sweep_answers: dict[str, set] = {}  # sweep message id -> functions that answered it
        self.sweep = {"published": 0, "sweeps": 0, "last_started": None, "last_finished": None, "last_status": {}}
        self._out = out or sys.stdout
        self._local = threading.local()
        self.instance = uuid.uuid4().hex  # lets `oddsbatch wait` tell a restarted bridge from this one

    def log(self, **fields) -> None:
        line = json.dumps({"ts": _now_rfc3339(), **fields}, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.c, "instance": self.instance, "targets": list(self.targets.values())}

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            import requests

            s = self._local.session = requests.Session()
        return s

    def _post(self, url: str, headers: dict, body: bytes) -> tuple[int | None, str | None]:
        try:
            resp = self._session().post(url, data=body, headers=headers, timeout=self.timeout)
            return resp.status_code, None if 200 <= resp.status_code < 300 else resp.text[:200]
        except Exception as exc:  # connection refused or reset (a crashed instance), timeout
            return None, f"{type(exc).__name__}: {exc}"[:300]

    # -- one push from Pub/Sub -------------------------------------------------------------------
    def handle_push(self, function: str, kind: str, push: dict) -> int:
        """Deliver one push; returns the status to answer Pub/Sub with."""
        url = self.targets.get(function)
        if url is None or kind not in ("storage", "sweep"):
            return 404
        if kind == "sweep":
            return self._sweep(function, url, push)
        headers, body = storage_event(push)
        if self.refuse_storage:  # a test's function that is down: Pub/Sub retries, then dead-letters
            return self._refuse(function, push, headers)
        key = (push.get("subscription", function), headers["ce-id"])
        with self._lock:
            attempt = self._count_attempt(key)
            duplicate = attempt == 1 and self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate
            self.c["in_flight"] += 1 + duplicate
            self.c["duplicates"] += duplicate
        twin = None
        if duplicate:
            twin = threading.Timer(self.duplicate_delay, self._duplicate, (url, headers, body, push))
            twin.ok = False
            twin.start()
        started = time.monotonic()
        status, error = self._post(url, headers, body)
        ok = status is not None and 200 <= status < 300
        if twin is not None:  # the push is answered once both deliveries did: a refused twin is
            twin.join()       # redelivered by Pub/Sub like any refused delivery
            if ok and not twin.ok:
                status, error, ok = 503, "the duplicate delivery was refused", False
        final = ok or not self.retry or attempt >= self.max_attempts
        with self._lock:
            self.c["attempts"] += 1
            self.c["in_flight"] -= 1
            self.c["delivered"] += ok
            was_refused = key in self._refused
            if ok or final:
                self._refused.discard(key)
                self._tries.pop(key, None)
            else:
                self._refused.add(key)
            self.c["retrying"] += (key in self._refused) - was_refused
            self.c["failed"] += final and not ok
        outcome = "delivered" if ok else ("failed" if final else "retry")
        generation = (push["message"].get("attributes") or {}).get("objectGeneration")
        self.log(event="delivery", ce_id=headers["ce-id"], target=url, object=headers["ce-subject"][8:],
                 generation=generation, attempt=attempt, duplicate=False, status=status, ok=ok, error=error,
                 seconds=round(time.monotonic() - started, 3), outcome=outcome)
        if not self.retry:
            return 204  # a trigger without retries: one attempt, whatever its answer
        return status if ok else (status if status and status >= 400 else 503)

    def _count_attempt(self, key: tuple[str, str]) -> int:
        """Count one delivery attempt of (subscription, ce-id), under self._lock: the message
        is received once whatever its attempts; returns this attempt's number."""
        ce_id = key[1]
        if ce_id not in self._seen:
            self._seen.add(ce_id)
            self.c["received"] += 1
        attempt = self._tries[key] = self._tries.get(key, 0) + 1
        return attempt

    def _refuse(self, function: str, push: dict, headers: dict) -> int:
        key = (push.get("subscription", function), headers["ce-id"])
        with self._lock:
            attempt = self._count_attempt(key)
            self.c["attempts"] += 1
            final = attempt >= self.max_attempts
            self.c["failed"] += final
            if final:
                self._tries.pop(key, None)
        self.log(event="delivery", ce_id=headers["ce-id"], target=function, object=headers["ce-subject"][8:],
                 attempt=attempt, status=503, ok=False, error="refused (--refuse-storage)",
                 outcome="failed" if final else "retry")
        return 503

    def _duplicate(self, url: str, headers: dict, body: bytes, push: dict) -> None:
        status, error = self._post(url, headers, body)
        ok = threading.current_thread().ok = status is not None and 200 <= status < 300
        with self._lock:
            self.c["attempts"] += 1
            self.c["in_flight"] -= 1
            self.c["delivered"] += ok
        self.log(event="delivery", ce_id=headers["ce-id"], target=url, object=headers["ce-subject"][8:],
                 generation=(push["message"].get("attributes") or {}).get("objectGeneration"), attempt=1, duplicate=True, status=status, ok=ok, error=error, outcome="duplicate")

    def _sweep(self, function: str, url: str, push: dict) -> int:
        headers, body = pubsub_event(push, f"projects/{self.project}/topics/{delivery.SWEEP_TOPIC}")
        with self._lock:
            self.sweep["last_started"] = _now_rfc3339()
        status, error = self._post(url, headers, body)
        with self._lock:
            answered = self._sweep_answers.setdefault(headers["ce-id"], set())
            answered.add(function)
            if answered == set(self.targets):  # every function answered this sweep message
                del self._sweep_answers[headers["ce-id"]]
                self.sweep["sweeps"] += 1
                self.sweep["last_finished"] = _now_rfc3339()
            self.sweep["last_status"][url] = status if status is not None else error
        self.log(event="sweep", ce_id=headers["ce-id"], target=url, status=status, error=error)
        # A sweep is not retried: the next period's message is its retry (Cloud Scheduler's cadence).
        return 204


class SweepTimer:
    """Cloud Scheduler's part: one message on the sweep topic per period (0: none)."""

    def __init__(self, bridge: Bridge, period: float):
        self.bridge, self.period = bridge, period
        self.topic = f"projects/{bridge.project}/topics/{delivery.SWEEP_TOPIC}"
        self.stop_event = threading.Event()

    def run(self) -> None:
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        while not self.stop_event.wait(self.period):
            try:
                publisher.publish(self.topic, b"sweep").result(timeout=30)
                with self.bridge._lock:
                    self.bridge.sweep["published"] += 1
            except Exception as exc:  # noqa: BLE001 - logged; the next period publishes again
                self.bridge.log(event="sweep_publish_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def start(self) -> "SweepTimer":
        threading.Thread(target=self.run, name="sweep-timer", daemon=True).start()
        return self


def start_http(bridge: Bridge, port: int, period: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 3 or parts[0] != "push":
                return self._answer(404, b"not found")
            try:
                push = json.loads(body)
                push["message"]["messageId"]
            except (ValueError, KeyError, TypeError):
                return self._answer(400, b"not a Pub/Sub push")
            self._answer(bridge.handle_push(parts[1], parts[2], push))

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/sweep":
                with bridge._lock:
                    state = {"period": period, **json.loads(json.dumps(bridge.sweep))}
                self._answer(200, json.dumps(state).encode(), "application/json")
            elif path in ("/status", "/"):
                self._answer(200, json.dumps(bridge.snapshot()).encode(), "application/json")
            elif path == "/health":
                self._answer(200, b"ok")
            else:
                self._answer(404, b"not found")

        def log_message(self, *args):  # quiet: the delivery lines are the log
            pass

    httpd = ThreadingHTTPServer((HOST, port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd


def _env(name: str, default):
    return os.environ.get(ENV_PREFIX + name, default)


def _target(value: str) -> tuple[str, str]:
    function, sep, url = value.partition("=")
    if not sep or not function or not url:
        raise argparse.ArgumentTypeError(f"--target wants FUNCTION=URL, got {value!r}")
    return function, url


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m oddsbatch.local.bridge", description=__doc__.splitlines()[0])
    p.add_argument("--status-port", type=int, required=True, help="HTTP port: pushes in, GET /status")
    p.add_argument("--project", default=_env("PROJECT", "test-project"))
    p.add_argument("--target", type=_target, action="append", default=[], help="FUNCTION=URL (repeat per function)")
    p.add_argument("--max-attempts", type=int, default=int(_env("MAX_ATTEMPTS", delivery.MAX_DELIVERY_ATTEMPTS)),
                   help="the subscriptions' maximum delivery attempts (to count dead letters)")
    p.add_argument("--no-retry", action="store_true", help="a trigger with retries off: acknowledge every push")
    p.add_argument("--refuse-storage", action="store_true",
                   help="tests: answer every storage push 503 without a POST (a function that is down)")
    p.add_argument("--timeout", type=float, default=float(_env("TIMEOUT", delivery.ACK_DEADLINE_SECONDS)))
    p.add_argument("--duplicate-rate", type=float, default=float(_env("DUPLICATE_RATE", 0.0)),
                   help="fraction of storage events POSTed twice (same ce-id)")
    p.add_argument("--duplicate-delay", type=float, default=float(_env("DUPLICATE_DELAY", 0.2)))
    p.add_argument("--seed", type=int, default=int(_env("SEED", 0)))
    p.add_argument("--sweep-seconds", type=float, default=float(_env("SWEEP_SECONDS", 0.0)),
                   help="period of the sweep message published on the sweep topic (0: none)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.duplicate_rate <= 1.0:
        print("bridge: --duplicate-rate must be within [0, 1]", file=sys.stderr)
        return 2
    if args.sweep_seconds < 0:
        print("bridge: --sweep-seconds must be >= 0", file=sys.stderr)
        return 2
    bridge = Bridge(dict(args.target), project=args.project, max_attempts=args.max_attempts,
                    retry=not args.no_retry, timeout=args.timeout, duplicate_rate=args.duplicate_rate,
                    duplicate_delay=args.duplicate_delay, seed=args.seed, refuse_storage=args.refuse_storage)
    httpd = start_http(bridge, args.status_port, args.sweep_seconds)
    bridge.log(event="bridge_listening", host=HOST, port=args.status_port, targets=bridge.targets,
               max_attempts=args.max_attempts, retry=not args.no_retry, duplicate_rate=args.duplicate_rate,
               seed=args.seed, sweep_seconds=args.sweep_seconds)
    timer = SweepTimer(bridge, args.sweep_seconds).start() if args.sweep_seconds else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    if timer:
        timer.stop_event.set()
    bridge.log(event="bridge_stopping", **bridge.snapshot())
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
