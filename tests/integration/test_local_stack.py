"""The local stack itself: loopback-only processes, GCS notifications -> bridge -> CloudEvents,
Eventarc-like retries, provisioned tables, replay/wait, and a `down` that leaves nothing behind.

Nothing here depends on the batch logic: objects outside `odds-api/` are acknowledged by both
functions without touching Firestore or BigQuery, and the CloudEvent format is checked against
a recording HTTP server fed by a dedicated GCS emulator + bridge pair.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from oddsbatch.ingest_log import LOG_TABLE
from oddsbatch.local import delivery, emulators
from oddsbatch.local import stack as stack_mod
from oddsbatch.local.stack import Stack, StackError, free_ports, listening_addresses, pid_alive
from oddsbatch.routines import all_routines
from oddsbatch.tables import all_tables

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "oddsbatch.cli"]


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} not listening after {timeout}s")


def _status(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def _wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- a recording "function" and a dedicated GCS emulator + bridge pair ----------------------------
class Recorder:
    """HTTP server on 127.0.0.1 that records every POST; `answer(n_for_this_id)` gives the status."""

    def __init__(self, answer=lambda n: 204):
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with rec.lock:
                    n = 1 + sum(1 for c in rec.calls if c["headers"].get("ce-id") == headers.get("ce-id"))
                    rec.calls.append({"headers": headers, "body": body, "t": time.monotonic(), "n": n})
                code = answer(n)
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class MiniPipeline:
    """fake-gcs-server publishing to a Pub/Sub emulator of its own, whose push subscriptions (one per
    target, as delivery.create_topology makes them) push to a bridge that POSTs to the targets."""

    bucket = "mini-bucket"

    def __init__(self, tmp: Path, targets: list[str], bridge_args: list[str] = (), max_attempts: int = 5):
        gcs_port, pubsub_port, status_port = free_ports(3)
        tmp.mkdir(parents=True, exist_ok=True)
        self.bridge_log = tmp / "bridge.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODDSBATCH_BRIDGE_")}
        env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host = f"127.0.0.1:{pubsub_port}"
        self.functions = {f"fn{i}": url for i, url in enumerate(targets)}
        self.procs = [subprocess.Popen(list(emulators.pubsub_emulator(pubsub_port).argv), stdout=open(tmp / "pubsub.log", "ab"),
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)]
        _wait_for(lambda: _http_ok(f"http://{self.pubsub_host}/"), timeout=60, what="the Pub/Sub emulator")
        saved = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        try:
            self.topology = delivery.create_topology("test-project", f"http://127.0.0.1:{status_port}",
                                                     self.functions, max_attempts)
        finally:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved or ""
        self.procs += [
            subprocess.Popen([sys.executable, "-m", "oddsbatch.local.bridge", "--status-port", str(status_port),
                              "--max-attempts", str(max_attempts),
                              *[a for fn, url in self.functions.items() for a in ("--target", f"{fn}={url}")],
                              *bridge_args], stdout=open(self.bridge_log, "ab"), stderr=subprocess.STDOUT,
                             env=env, start_new_session=True),
            subprocess.Popen([str(stack_mod._fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
                              "-port", str(gcs_port), "-backend", "memory", "-external-url",
                              f"http://127.0.0.1:{gcs_port}", "-event.pubsub-project-id", "test-project",
                              "-event.pubsub-topic", delivery.GCS_TOPIC, "-event.bucket", self.bucket,
                              "-event.list", "finalize"],
                             stdout=open(tmp / "gcs.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                             env=env),
        ]
        for port in (status_port, gcs_port):
            _wait_port(port)
        self.status_url = f"http://127.0.0.1:{status_port}/status"
        self.gcs_url = f"http://127.0.0.1:{gcs_port}"
        # A client of its own (not oddsbatch.clients: the session stack owns STORAGE_EMULATOR_HOST).
        os.environ["STORAGE_EMULATOR_HOST"], saved = self.gcs_url, os.environ.get("STORAGE_EMULATOR_HOST")
        try:
            self.client = storage.Client(project="test-project", credentials=AnonymousCredentials())
            self.client.create_bucket(self.bucket)
        finally:
            os.environ["STORAGE_EMULATOR_HOST"] = saved or ""

    def dead_letters(self) -> list:
        saved = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        try:
            return delivery.peek_dead_letters(self.topology["dead_letter_subscription"])
        finally:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved or ""

    def upload(self, name: str, data: bytes) -> storage.Blob:
        os.environ["STORAGE_EMULATOR_HOST"], saved = self.gcs_url, os.environ.get("STORAGE_EMULATOR_HOST")
        try:
            blob = self.client.bucket(self.bucket).blob(name)
            blob.upload_from_string(data, content_type="application/json")
            return blob
        finally:
            os.environ["STORAGE_EMULATOR_HOST"] = saved or ""

    def status(self) -> dict:
        return _status(self.status_url)

    def close(self):
        for p in self.procs:
            os.killpg(p.pid, signal.SIGTERM)  # each in its own group: the Java server included
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


# -- the session stack ----------------------------------------------------------------------------
def test_every_process_listens_on_loopback_only(stack):
    rows = stack.status()
    assert {r["name"] for r in rows} == {"gcs", "firestore", "pubsub", "bigquery", "bridge", "game_lines",
                                                 "player_props"}
    for row in rows:
        assert row["alive"], row
        addrs = listening_addresses(row["pid"])
        assert addrs, f"{row['name']} listens on nothing"
        assert {a for a, _ in addrs} == {"127.0.0.1"}, (row["name"], addrs)
        assert set(row["ports"]) <= {p for _, p in addrs}, (row["name"], row["ports"], addrs)


def test_local_env_file_lists_every_endpoint(stack):
    env = stack_mod.load_env(stack.state_dir)
    for key in ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "ODDSBATCH_BIGQUERY_ENDPOINT",
                "ODDSBATCH_PROJECT", "ODDSBATCH_BUCKET", "ODDSBATCH_DATASET", "ODDSBATCH_BRIDGE_STATUS_URL",
                "ODDSBATCH_GAME_LINES_URL", "ODDSBATCH_PLAYER_PROPS_URL"):
        assert env.get(key), key
        assert "0.0.0.0" not in env[key] and "localhost" not in env[key]
    assert env["ODDSBATCH_PROJECT"] == "test-project"
    assert env["ODDSBATCH_BUCKET"] == "oddsbatch-landing" and env["ODDSBATCH_DATASET"] == "odds_api"


def test_tables_are_partitioned_and_clustered_as_the_schema_files_say(stack):
    bq = stack.bigquery()
    assert {t.table_id for t in bq.list_tables(f"{stack.project}.{stack.dataset}")} >= set(all_tables())
    for spec in all_tables().values():
        table = bq.get_table(f"{stack.project}.{stack.dataset}.{spec.name}")
        assert [f.name for f in table.schema] == list(spec.columns)
        assert [_legacy(f.field_type) for f in table.schema] == [_legacy(f.field_type) for f in spec.bigquery_schema()]
        assert [f.mode for f in table.schema] == [f.mode for f in spec.bigquery_schema()]
        assert table.time_partitioning is not None
        assert table.time_partitioning.type_ == "DAY"
        assert table.time_partitioning.field == spec.partition_field
        assert bool(table.require_partition_filter) == spec.require_partition_filter
        assert table.clustering_fields == list(spec.clustering)


def _legacy(field_type: str) -> str:
    """BigQuery answers with the legacy names of standard SQL types (INT64 -> INTEGER, ...)."""
    return {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD"}.get(field_type, field_type)


def test_an_upload_reaches_both_functions_as_a_cloud_event(stack):
    name = f"scratch/ping-{time.time_ns()}.json"
    before = stack.bridge_status()
    blob = stack.storage().bucket(stack.bucket).blob(name)
    blob.upload_from_string(b"{}", content_type="application/json")
    after = stack.wait_idle(expected_events=1, timeout=60)
    assert after["received"] >= before["received"] + 1
    assert after["delivered"] >= before["delivered"] + 2  # one per function
    lines = [json.loads(l) for l in stack.log_text("bridge").splitlines() if name in l]
    ok = {l["target"] for l in lines if l["event"] == "delivery" and l["ok"]}
    assert ok == {stack.urls["game_lines"], stack.urls["player_props"]}
    assert all(l["generation"] == str(blob.generation) for l in lines)
    for fn in ("game_lines", "player_props"):
        assert name in stack.log_text(fn)  # the function's own "ignored" decision line


def test_replay_and_wait_commands(stack, tmp_path):
    tree = tmp_path / "tree"
    for rel in ("scratch/replay/a.json", "scratch/replay/b/c.json", "scratch/replay/b/d.txt"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b'{"x": 1}')
    env = {**os.environ}
    r = subprocess.run([*CLI, "replay", str(tree), "--concurrency", "3", "--state-dir", str(stack.state_dir)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "replayed 3 files" in r.stdout
    r = subprocess.run([*CLI, "wait", "--timeout", "60", "--state-dir", str(stack.state_dir)],
                       capture_output=True, text=True, env=env, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "0 dead-lettered; dead-letter subscription holds 0" in r.stdout, r.stdout
    stack.wait_idle(expected_events=3)  # keep the fixture's event baseline in step
    names = {b.name for b in stack.storage().list_blobs(stack.bucket, prefix="scratch/replay/")}
    assert names == {"scratch/replay/a.json", "scratch/replay/b/c.json", "scratch/replay/b/d.txt"}


def test_reset_empties_bucket_firestore_and_tables(stack):
    stack.storage().bucket(stack.bucket).blob("scratch/reset-me.json").upload_from_string(b"{}")
    stack.wait_idle(expected_events=1)
    stack.firestore().collection("oddsbatch_runs").document("probe").set({"x": 1})
    bq = stack.bigquery()
    bq.query(f"CREATE TABLE `{stack.project}.{stack.dataset}.staging_probe` AS SELECT 1 AS x").result()
    stack.reset()
    assert not list(stack.storage().list_blobs(stack.bucket))
    assert not stack.firestore().collection("oddsbatch_runs").document("probe").get().exists
    listed = {t.table_id for t in bq.list_tables(f"{stack.project}.{stack.dataset}")}
    # local-bigquery lists table functions among the tables (BigQuery does not): the reset made them anew
    assert listed - {r.name for r in all_routines()} == set(all_tables()) | {LOG_TABLE}


def test_commands_on_a_stack_that_is_not_up_fail_in_one_line(tmp_path):
    # a newcomer's shell: no stack up and no project configured (status would read real GCP)
    # (GOOGLE_CLOUD_PROJECT names a project as much as ODDSBATCH_PROJECT does: drop both)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ODDSBATCH_") and k not in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")}
    for args in (["wait", "--timeout", "1"], ["replay", str(tmp_path)], ["status"]):
        r = subprocess.run([*CLI, *args, "--state-dir", str(tmp_path / "nothing")], capture_output=True,
                           text=True, timeout=60, env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "not up" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


# -- a dedicated GCS emulator + bridge feeding a recording server ---------------------------------
def test_the_bridge_posts_binary_cloud_events_to_every_target(tmp_path):
    a, b = Recorder(), Recorder()
    mini = MiniPipeline(tmp_path, [a.url, b.url])
    try:
        blob = mini.upload("odds-api/game-lines/2025-01-20/file.json", b'{"hello": 1}')
        _wait_for(lambda: len(a.calls) >= 1 and len(b.calls) >= 1, what="both targets called")
        _wait_for(lambda: mini.status()["in_flight"] == 0, what="deliveries done")
        for rec in (a, b):
            (call,) = rec.calls
            h = call["headers"]
            assert h["ce-specversion"] == "1.0"
            assert h["ce-type"] == "google.cloud.storage.object.v1.finalized"
            assert h["ce-source"] == f"//storage.googleapis.com/projects/_/buckets/{mini.bucket}"
            assert h["ce-subject"] == "objects/odds-api/game-lines/2025-01-20/file.json"
            assert h["ce-time"].endswith("Z") and h["ce-id"]
            assert h["content-type"] == "application/json"
            body = json.loads(call["body"])
            assert body["bucket"] == mini.bucket and body["name"] == "odds-api/game-lines/2025-01-20/file.json"
            assert body["generation"] == str(blob.generation)
            assert body["timeCreated"] and body["size"] == "12"
        assert a.calls[0]["headers"]["ce-id"] == b.calls[0]["headers"]["ce-id"]
        s = mini.status()
        assert (s["received"], s["delivered"], s["failed"], s["retrying"]) == (1, 2, 0, 0)
    finally:
        mini.close()
        a.close()
        b.close()


def test_pubsub_redelivers_a_refused_event_then_the_bridge_delivers_it(tmp_path):
    """A non-2xx answer is passed back to Pub/Sub, which redelivers (Eventarc's retries are Pub/Sub's,
    https://cloud.google.com/eventarc/docs/retry-events); the retry keeps the event id."""
    rec = Recorder(answer=lambda n: 500 if n <= 2 else 200)
    mini = MiniPipeline(tmp_path, [rec.url])
    try:
        mini.upload("x/retry.json", b"{}")
        _wait_for(lambda: mini.status()["delivered"] == 1, timeout=60, what="delivery after retries")
        assert [c["n"] for c in rec.calls] == [1, 2, 3]
        assert len({c["headers"]["ce-id"] for c in rec.calls}) == 1  # a retry keeps the event id
        s = mini.status()
        assert (s["attempts"], s["failed"], s["in_flight"], s["retrying"]) == (3, 0, 0, 0)
        attempts = [json.loads(l) for l in mini.bridge_log.read_text().splitlines() if '"delivery"' in l]
        assert [x["outcome"] for x in attempts] == ["retry", "retry", "delivered"]
        assert mini.dead_letters() == []
    finally:
        mini.close()
        rec.close()


def test_an_event_refused_max_attempts_times_is_dead_lettered_by_pubsub(tmp_path):
    """After the subscription's maximum delivery attempts Pub/Sub forwards the message to the
    dead-letter topic (https://cloud.google.com/pubsub/docs/dead-letter-topics), whose subscription
    keeps it with the source subscription's delivery count."""
    rec = Recorder(answer=lambda n: 503)
    mini = MiniPipeline(tmp_path, [rec.url], max_attempts=5)
    try:
        mini.upload("x/fail.json", b"{}")
        _wait_for(lambda: mini.status()["failed"] == 1, timeout=90, what="failure counted")
        assert len(rec.calls) == 5
        assert mini.status()["in_flight"] == mini.status()["retrying"] == 0
        (letter,) = _wait_for(mini.dead_letters, timeout=30, what="the dead letter")
        assert letter.attributes["objectId"] == "x/fail.json"
        assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    finally:
        mini.close()
        rec.close()


def test_the_bridge_duplicates_a_seeded_fraction_with_the_same_id(tmp_path):
    rec = Recorder()
    mini = MiniPipeline(tmp_path, [rec.url], ["--duplicate-rate", "1.0", "--duplicate-delay", "0.05"])
    try:
        for i in range(3):
            mini.upload(f"x/dup-{i}.json", b"{}")
        _wait_for(lambda: mini.status()["delivered"] == 6 and mini.status()["in_flight"] == 0,
                  what="6 deliveries")
        ids = [c["headers"]["ce-id"] for c in rec.calls]
        assert len(ids) == 6 and all(ids.count(i) == 2 for i in ids)
        assert mini.status()["duplicates"] == 3
    finally:
        mini.close()
        rec.close()


# -- a second, short-lived stack: up twice, status, down twice ------------------------------------
def test_up_refuses_a_running_stack_and_down_leaves_no_process(tmp_path):
    state = tmp_path / "state"
    st = Stack(state, settle_seconds=0.2)
    st.start()
    try:
        pids = {name: p["pid"] for name, p in st.procs.items()}
        assert all(pid_alive(pid) for pid in pids.values())
        with pytest.raises(StackError, match="already up"):
            Stack(state).start()
        r = subprocess.run([*CLI, "up", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "already up" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        r = subprocess.run([*CLI, "status", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.count(" alive ") == 7, r.stdout
        assert "Google Cloud Firestore emulator" in r.stdout and "Google Cloud Pub/Sub emulator" in r.stdout
        assert "dead-letter subscription holds 0" in r.stdout, r.stdout
        children = {pid: _descendants(pid) for pid in pids.values()}
    finally:
        r = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("stopped"), r.stdout + r.stderr
    for proc in st._popen.values():  # reap our own children so they do not linger as zombies
        proc.wait(timeout=10)
    for pid in [*pids.values(), *[c for cs in children.values() for c in cs]]:
        assert not pid_alive(pid), pid
    assert not (state / "local.env").exists() and not (state / "pids.json").exists()
    r = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nothing to stop" in r.stdout


def _descendants(pid: int) -> set[int]:
    out, frontier = set(), {pid}
    while frontier:
        nxt = set()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid in frontier and int(d.name) not in out:
                    nxt.add(int(d.name))
        out |= nxt
        frontier = nxt
    return out
