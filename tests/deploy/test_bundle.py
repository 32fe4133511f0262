"""The bundles deploy.sh builds: their contents, and that one serves on its own.

The serving test installs the bundle's requirements.txt into a fresh virtualenv and runs
functions-framework in the bundle folder with PYTHONPATH = that folder only, so nothing of
the repo (shared/, .venv) can stand in for a missing file.
"""

from __future__ import annotations

import filecmp
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "shared" / "oddsbatch"
FUNCTIONS = ("game_lines", "player_props")


def build(tmp_path: Path) -> Path:
    out = tmp_path / "build"
    proc = subprocess.run(
        ["bash", str(REPO / "deploy.sh"), "--build-only", "--build-dir", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    for fn in FUNCTIONS:
        count = sum(1 for p in (out / fn).rglob("*") if p.is_file())
        assert f"built {out / fn} ({count} files)" in proc.stdout.splitlines()
    return out


def test_runtime_code_does_not_need_local():
    """Nothing outside local/ imports it, so leaving local/ out of the bundle is safe."""
    for path in PACKAGE.rglob("*.py"):
        if "local" in path.relative_to(PACKAGE).parts[:-1] or path.name == "cli.py":
            continue  # cli.py only names local modules as strings for its local-stack commands
        text = path.read_text()
        for needle in ("oddsbatch.local", "from .local", "from ..local", "from . import local"):
            assert needle not in text, f"{path} uses {needle}"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("bundles"))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_bundle_contents(bundles, fn):
    bundle = bundles / fn
    src = REPO / "functions" / fn
    assert filecmp.cmp(bundle / "main.py", src / "main.py", shallow=False)
    assert filecmp.cmp(bundle / "requirements.txt", src / "requirements.txt", shallow=False)

    expected = {p.relative_to(PACKAGE) for p in PACKAGE.glob("*.py")}
    expected |= {p.relative_to(PACKAGE) for p in PACKAGE.glob("schemas/*.json")}
    vendored = {p.relative_to(bundle / "oddsbatch") for p in (bundle / "oddsbatch").rglob("*") if p.is_file()}
    assert vendored == expected
    for rel in expected:
        assert filecmp.cmp(bundle / "oddsbatch" / rel, PACKAGE / rel, shallow=False), rel

    top = {p.name for p in bundle.iterdir()}
    assert top == {"main.py", "requirements.txt", "oddsbatch"}
    assert not (bundle / "oddsbatch" / "local").exists()
    assert not [p for p in bundle.rglob("__pycache__")] + [p for p in bundle.rglob("*.pyc")]


def test_rebuild_replaces_stale_files(tmp_path):
    out = build(tmp_path)
    stale = out / "game_lines" / "oddsbatch" / "stale.py"
    stale.write_text("x = 1\n")
    build(tmp_path)
    assert not stale.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes, headers: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.integration
def test_bundle_serves_on_its_own(bundles, tmp_path, stack):
    """Fresh venv + the bundle's own requirements, served from the bundle folder alone: the
    ignore path answers 200, and a real object is processed against the emulators."""
    bundle = bundles / "game_lines"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(bundle / "requirements.txt")],
        check=True, timeout=300,
    )
    port = _free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(bundle),  # only the bundle: no shared/, no repo .venv
        "PYTHONDONTWRITEBYTECODE": "1",
        "ODDSBATCH_PROJECT": "bundle-test",
    }
    # A bucket of its own: the stack's bridge does not watch it, so only this bundle sees the event.
    bundle_bucket = "oddsbatch-bundle-test"
    stack.storage().create_bucket(bundle_bucket)
    serve_env = {**env, **{k: stack.env[k] for k in (
        "STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "ODDSBATCH_BIGQUERY_ENDPOINT", "ODDSBATCH_PROJECT",
        "ODDSBATCH_DATASET", "ODDSBATCH_STAGING_BUCKET")}, "ODDSBATCH_BUCKET": bundle_bucket,
        "ODDSBATCH_SETTLE_SECONDS": "0"}
    where = subprocess.run(
        # the whole batch path imports (Google clients included) and the schemas load
        [str(venv / "bin" / "python"), "-c",
         "import main, oddsbatch, oddsbatch.batch, oddsbatch.tables as t;"
         "[s.bigquery_schema() for s in t.all_tables().values()];"
         "print(oddsbatch.__file__)"],
        cwd=bundle, env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == bundle / "oddsbatch" / "__init__.py"

    log = tmp_path / "ff.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "functions-framework"), "--target", "game_lines", "--source", "main.py",
             "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
            cwd=bundle, env=serve_env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        headers = {
            "Content-Type": "application/json",
            "ce-id": "bundle-1",
            "ce-specversion": "1.0",
            "ce-source": "//storage.googleapis.com/projects/_/buckets/landing",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-subject": "objects/elsewhere/file.json",
        }
        body = json.dumps({"bucket": "landing", "name": "elsewhere/file.json", "generation": "1"}).encode()
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status, text = _post(url, body, headers)
                break
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise AssertionError("functions-framework did not answer:\n" + log.read_text())
                time.sleep(0.2)
        assert status == 200, text
        deadline = time.monotonic() + 5
        while '"message": "ignored"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
        assert any(r.get("message") == "ignored" and r.get("object") == "elsewhere/file.json" for r in lines), \
            log.read_text()

        # a real snapshot, processed by the bundle against the emulators
        name = ("odds-api/game-lines/2025-07-01/0123456789abcdef0123456789abcdef-BOSLAL/"
                "20250701_180000-snap-1800.json")
        payload = (REPO / "tests" / "data" / "event_odds_game_lines_american_synthetic.json").read_bytes().replace(
            b'"a1b2c3d4e5f6g7h8i9j0"', b'"0123456789abcdef0123456789abcdef"')
        blob = stack.storage().bucket(bundle_bucket).blob(name)
        blob.upload_from_string(payload, content_type="application/json")
        event = {"bucket": bundle_bucket, "name": name, "generation": str(blob.generation),
                 "timeCreated": "2025-07-01T18:00:01Z", "size": str(len(payload))}
        status, text = _post(url, json.dumps(event).encode(), {**headers, "ce-id": "bundle-2",
                                                               "ce-subject": f"objects/{name}"})
        assert status == 200, text + log.read_text()
        lines = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
        merged = [r for r in lines if r.get("message") == "merged"]
        assert merged and merged[0]["files"] == 1 and merged[0]["rows"] == 12 and merged[0]["merges"] == 1, \
            log.read_text()
        from google.cloud import bigquery

        rows = stack.bigquery().query(
            f"SELECT COUNT(*) AS n FROM `{stack.project}.{stack.dataset}.odds_api_game_lines` "
            "WHERE game_date = @d AND source_object = @o",
            job_config=bigquery.QueryJobConfig(query_parameters=[
                bigquery.ScalarQueryParameter("d", "DATE", "2025-07-01"),
                bigquery.ScalarQueryParameter("o", "STRING", name)])).result()
        assert next(iter(rows))["n"] == 12
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
