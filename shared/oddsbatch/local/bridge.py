"""Local event bridge: GCS emulator notifications (Pub/Sub Publish over gRPC) -> CloudEvents.

fake-gcs-server, started with `-event.pubsub-*` flags and PUBSUB_EMULATOR_HOST pointing here,
calls only `google.pubsub.v1.Publisher/Publish` (batched: several messages per call, sent a
few milliseconds after the upload request has returned). This process answers Publish at once
and delivers every message asynchronously, as Eventarc does, to EVERY configured function URL
as a binary-mode CloudEvent (`ce-*` headers, body = the object resource JSON).

Delivery: concurrent (thread pool); a non-2xx answer or a connection error is retried with
capped exponential backoff (local defaults 0.5 s doubling to 10 s, 8 attempts), then counted
as failed. `--duplicate-rate R` delivers a seeded fraction R of the messages twice (same
ce-id), as an at-least-once transport may. One JSON line per delivery attempt on stdout.

GET http://127.0.0.1:<status-port>/status -> {"received", "delivered", "in_flight",
"retrying", "failed", "duplicates", "attempts", ...}.

Sweep timer (`--sweep-seconds S`, 0 = off): every S seconds the bridge plays Cloud Scheduler ->
Pub/Sub -> Eventarc and POSTs one Pub/Sub message-published CloudEvent (type
google.cloud.pubsub.topic.v1.messagePublished, source //pubsub.googleapis.com/<--sweep-topic>)
to every function, once each (the next tick is the retry), waiting for the answers before the
next period starts. GET /sweep -> {"sweeps", "last_started", "last_finished", "last_status"};
the sweep is kept out of /status so `oddsbatch wait` is not disturbed by it.

    python -m oddsbatch.local.bridge --grpc-port P --status-port S --target URL [--target URL ...]

Every tuning flag defaults from an environment variable, so `oddsbatch up` (which passes the
caller's ODDSBATCH_* variables through) can be tuned without code: ODDSBATCH_BRIDGE_INITIAL_BACKOFF,
_MAX_BACKOFF, _MAX_ATTEMPTS, _WORKERS, _TIMEOUT, _DUPLICATE_RATE, _DUPLICATE_DELAY, _SEED.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from concurrent import futures
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"

# GCS notification eventType -> CloudEvent type (Eventarc's direct GCS events).
CE_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}

ENV_PREFIX = "ODDSBATCH_BRIDGE_"


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.c = dict(received=0, delivered=0, in_flight=0, retrying=0, failed=0, duplicates=0,
                      attempts=0, publish_calls=0)

    def add(self, **deltas) -> None:
        with self._lock:
            for k, v in deltas.items():
                self.c[k] += v

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.c)


class Scheduler:
    """Runs callables at a future monotonic time on a thread pool (retries without parking threads)."""

    def __init__(self, pool: futures.ThreadPoolExecutor):
        self._pool = pool
        self._heap: list = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        threading.Thread(target=self._run, name="scheduler", daemon=True).start()

    def at(self, when: float, fn, *args) -> None:
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), fn, args))
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cv.wait(timeout)
                if self._stopped:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            self._pool.submit(fn, *args)


class Bridge:
    def __init__(self, targets: list[str], *, initial_backoff: float = 0.5, max_backoff: float = 10.0,
                 max_attempts: int = 8, workers: int = 32, timeout: float = 300.0,
                 duplicate_rate: float = 0.0, duplicate_delay: float = 0.2, seed: int = 0, out=None):
        if not targets:
            raise ValueError("the bridge needs at least one --target URL")
        self.targets = list(targets)
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.duplicate_rate = duplicate_rate
        self.duplicate_delay = duplicate_delay
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.stats = Stats()
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self.scheduler = Scheduler(self.pool)
        self._ids = itertools.count(1)
        self._out = out or sys.stdout
        self._out_lock = threading.Lock()
        self._local = threading.local()
        self.instance = uuid.uuid4().hex  # lets `oddsbatch wait` tell a restarted bridge from this one

    # -- logging -----------------------------------------------------------------------------
    def log(self, **fields) -> None:
        line = json.dumps({"ts": _now_rfc3339(), **fields}, default=str)
        with self._out_lock:
            self._out.write(line + "\n")
            self._out.flush()

    # -- Publish -----------------------------------------------------------------------------
    def publish(self, messages) -> list[str]:
        """Accept messages (objects with .data bytes and .attributes mapping); returns their ids."""
        ids = []
        self.stats.add(publish_calls=1)
        for msg in messages:
            message_id = str(next(self._ids))
            ids.append(message_id)
            event = self._cloud_event(message_id, bytes(msg.data), dict(msg.attributes))
            with self._rng_lock:
                duplicate = self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate
            deliveries = len(self.targets) * (2 if duplicate else 1)
            self.stats.add(received=1, in_flight=deliveries, duplicates=len(self.targets) if duplicate else 0)
            for url in self.targets:
                self.pool.submit(self._attempt, event, url, 1, False)
                if duplicate:
                    self.scheduler.at(time.monotonic() + self.duplicate_delay, self._attempt, event, url, 1, True)
        return ids

    def _cloud_event(self, message_id: str, data: bytes, attributes: dict) -> dict:
        try:
            resource = json.loads(data or b"{}")
        except ValueError:
            resource = {}
        bucket = attributes.get("bucketId") or resource.get("bucket", "")
        name = attributes.get("objectId") or resource.get("name", "")
        ce_type = CE_TYPES.get(attributes.get("eventType", "OBJECT_FINALIZE"), attributes.get("eventType", ""))
        event_time = resource.get("updated") or resource.get("timeCreated") or attributes.get("eventTime") or _now_rfc3339()
        headers = {
            "ce-id": message_id,
            "ce-specversion": "1.0",
            "ce-type": ce_type,
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}",
            "ce-time": event_time,
            "content-type": "application/json",
        }
        return {"headers": headers, "body": data, "name": name, "bucket": bucket,
                "generation": attributes.get("objectGeneration") or resource.get("generation")}

    # -- delivery ----------------------------------------------------------------------------
    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            import requests

            s = self._local.session = requests.Session()
        return s

    def _attempt(self, event: dict, url: str, attempt: int, duplicate: bool) -> None:
        started = time.monotonic()
        status, error = None, None
        try:
            resp = self._session().post(url, data=event["body"], headers=event["headers"], timeout=self.timeout)
            status = resp.status_code
            ok = 200 <= status < 300
            if not ok:
                error = resp.text[:200]
        except Exception as exc:  # connection refused, reset, timeout: all retried
            ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
        self.stats.add(attempts=1)
        final = ok or attempt >= self.max_attempts
        delay = None if final else min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        self.log(event="delivery", ce_id=event["headers"]["ce-id"], target=url, object=event["name"],
                 generation=event["generation"], attempt=attempt, duplicate=duplicate, status=status, ok=ok,
                 error=error, seconds=round(time.monotonic() - started, 3),
                 outcome="delivered" if ok else ("failed" if final else "retry"), retry_in=delay)
        if ok:
            self.stats.add(delivered=1, in_flight=-1)
        elif final:
            self.stats.add(failed=1, in_flight=-1)
        else:
            self.stats.add(retrying=1)
            self.scheduler.at(time.monotonic() + delay, self._retry, event, url, attempt + 1, duplicate)

    def _retry(self, event: dict, url: str, attempt: int, duplicate: bool) -> None:
        self.stats.add(retrying=-1)
        self._attempt(event, url, attempt, duplicate)

    def close(self) -> None:
        self.scheduler.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


SWEEP_CE_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


class SweepTimer:
    """Cloud Scheduler + Pub/Sub + Eventarc, locally: a sweep CloudEvent to every function per period."""

    def __init__(self, bridge: "Bridge", period: float, topic: str):
        self.bridge, self.period, self.topic = bridge, period, topic
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self.state = {"period": period, "topic": topic, "sweeps": 0, "last_started": None, "last_finished": None,
                      "last_status": {}}
        self._ids = itertools.count(1)

    def snapshot(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self.state))

    def event(self) -> dict:
        message_id = f"sweep-{self.bridge.instance[:8]}-{next(self._ids)}"
        now = _now_rfc3339()
        body = json.dumps({"message": {"data": base64.b64encode(b"sweep").decode(), "messageId": message_id,
                                       "publishTime": now, "attributes": {}},
                           "subscription": self.topic.replace("/topics/", "/subscriptions/") + "-eventarc"})
        return {"ce-id": message_id, "ce-specversion": "1.0", "ce-type": SWEEP_CE_TYPE,
                "ce-source": f"//pubsub.googleapis.com/{self.topic}", "ce-time": now,
                "content-type": "application/json"}, body.encode()

    def tick(self) -> dict:
        headers, body = self.event()
        with self._lock:
            self.state["last_started"] = _now_rfc3339()

        def post(url):
            try:
                return url, self.bridge._session().post(url, data=body, headers=headers,
                                                        timeout=self.bridge.timeout).status_code
            except Exception as exc:  # noqa: BLE001 - recorded; the next period is the retry
                return url, f"{type(exc).__name__}"

        with futures.ThreadPoolExecutor(max_workers=len(self.bridge.targets)) as pool:
            status = dict(pool.map(post, self.bridge.targets))
        with self._lock:
            self.state["sweeps"] += 1
            self.state["last_finished"] = _now_rfc3339()
            self.state["last_status"] = status
        self.bridge.log(event="sweep", ce_id=headers["ce-id"], status=status)
        return status

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self.tick()

    def start(self) -> "SweepTimer":
        threading.Thread(target=self.run, name="sweep-timer", daemon=True).start()
        return self


# -- servers ---------------------------------------------------------------------------------
def start_grpc(bridge: Bridge, port: int):
    import grpc
    from google.pubsub_v1.types import PublishRequest, PublishResponse, Topic

    def publish(request, context):
        return PublishResponse(message_ids=bridge.publish(request.messages))

    def topic_echo(request, context):  # CreateTopic / GetTopic, should a client ask
        return Topic(name=getattr(request, "name", "") or getattr(request, "topic", ""))

    from google.pubsub_v1.types import GetTopicRequest

    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            publish, request_deserializer=PublishRequest.deserialize, response_serializer=PublishResponse.serialize),
        "CreateTopic": grpc.unary_unary_rpc_method_handler(
            topic_echo, request_deserializer=Topic.deserialize, response_serializer=Topic.serialize),
        "GetTopic": grpc.unary_unary_rpc_method_handler(
            topic_echo, request_deserializer=GetTopicRequest.deserialize, response_serializer=Topic.serialize),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", handlers)])
    bound = server.add_insecure_port(f"{HOST}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC {HOST}:{port}")
    server.start()
    return server, bound


def start_status(bridge: Bridge, port: int, sweeper: SweepTimer | None = None):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] == "/sweep":
                body = json.dumps(sweeper.snapshot() if sweeper else {"period": 0, "sweeps": 0}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
            elif self.path.split("?")[0] in ("/status", "/"):
                body = json.dumps({**bridge.stats.snapshot(), "instance": bridge.instance,
                                   "targets": bridge.targets}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
            elif self.path == "/health":
                body = b"ok"
                self.send_response(200)
                self.send_header("content-type", "text/plain")
            else:
                body = b"not found"
                self.send_response(404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the delivery lines are the log
            pass

    httpd = ThreadingHTTPServer((HOST, port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="status", daemon=True).start()
    return httpd


def _env(name: str, default):
    return os.environ.get(ENV_PREFIX + name, default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m oddsbatch.local.bridge", description=__doc__.splitlines()[0])
    p.add_argument("--grpc-port", type=int, required=True, help="Pub/Sub gRPC port (PUBSUB_EMULATOR_HOST)")
    p.add_argument("--status-port", type=int, required=True, help="HTTP status port (GET /status)")
    p.add_argument("--target", action="append", default=[], help="function URL (repeat for each function)")
    p.add_argument("--initial-backoff", type=float, default=float(_env("INITIAL_BACKOFF", 0.5)))
    p.add_argument("--max-backoff", type=float, default=float(_env("MAX_BACKOFF", 10.0)))
    p.add_argument("--max-attempts", type=int, default=int(_env("MAX_ATTEMPTS", 8)))
    p.add_argument("--workers", type=int, default=int(_env("WORKERS", 32)), help="concurrent deliveries")
    p.add_argument("--timeout", type=float, default=float(_env("TIMEOUT", 300.0)), help="per-attempt HTTP timeout")
    p.add_argument("--duplicate-rate", type=float, default=float(_env("DUPLICATE_RATE", 0.0)),
                   help="fraction of messages delivered twice (same ce-id)")
    p.add_argument("--duplicate-delay", type=float, default=float(_env("DUPLICATE_DELAY", 0.2)))
    p.add_argument("--seed", type=int, default=int(_env("SEED", 0)))
    p.add_argument("--sweep-seconds", type=float, default=float(_env("SWEEP_SECONDS", 0.0)),
                   help="period of the sweep CloudEvent sent to every function (0: no sweep timer)")
    p.add_argument("--sweep-topic", default=_env("SWEEP_TOPIC", "projects/test-project/topics/oddsbatch-sweep"),
                   help="topic named in the sweep CloudEvent's source")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.duplicate_rate <= 1.0:
        print("bridge: --duplicate-rate must be within [0, 1]", file=sys.stderr)
        return 2
    if args.sweep_seconds < 0:
        print("bridge: --sweep-seconds must be >= 0", file=sys.stderr)
        return 2
    bridge = Bridge(args.target, initial_backoff=args.initial_backoff, max_backoff=args.max_backoff,
                    max_attempts=args.max_attempts, workers=args.workers, timeout=args.timeout,
                    duplicate_rate=args.duplicate_rate, duplicate_delay=args.duplicate_delay, seed=args.seed)
    grpc_server, grpc_port = start_grpc(bridge, args.grpc_port)
    sweeper = SweepTimer(bridge, args.sweep_seconds, args.sweep_topic) if args.sweep_seconds else None
    httpd = start_status(bridge, args.status_port, sweeper)
    bridge.log(event="bridge_listening", host=HOST, grpc_port=grpc_port, status_port=args.status_port,
               targets=args.target, initial_backoff=args.initial_backoff, max_backoff=args.max_backoff,
               max_attempts=args.max_attempts, duplicate_rate=args.duplicate_rate, seed=args.seed,
               sweep_seconds=args.sweep_seconds)
    if sweeper:
        sweeper.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    if sweeper:
        sweeper.stop_event.set()
    bridge.log(event="bridge_stopping", **bridge.stats.snapshot())
    grpc_server.stop(grace=1)
    httpd.shutdown()
    bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
