"""deploy.sh against a `gcloud` stand-in: the commands it runs, its dry run, its usage errors.

Every run puts a stand-in first on PATH (it appends its argv as one JSON array per call to
$GCLOUD_CALLS); the real gcloud of the machine is never reached.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from oddsbatch.config import SETTINGS_HELP

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy.sh"
BASH = shutil.which("bash") or "/bin/bash"
FINALIZED = "google.cloud.storage.object.v1.finalized"

STAND_IN = """#!/usr/bin/env bash
# gcloud stand-in: one JSON array of argv per call.
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >>"$GCLOUD_CALLS"
"""

# terraform stand-in: `output -raw bucket_location` prints $FAKE_TF_BUCKET_LOCATION, or acts
# like a directory without state (terraform's warning on stdout, status 0).
TERRAFORM_STAND_IN = """#!/usr/bin/env bash
if [[ -n "${FAKE_TF_BUCKET_LOCATION:-}" ]]; then printf '%s' "$FAKE_TF_BUCKET_LOCATION"; exit 0; fi
echo 'Warning: No outputs found'
"""

# Variables the deployed functions read besides oddsbatch's own settings: THREADS is read by
# functions-framework; ODDSBATCH_TIMEOUT_SECONDS is the holder's deadline (the function timeout).
RUNTIME_VARIABLES = {"THREADS", "ODDSBATCH_TIMEOUT_SECONDS"}

# What deploy.sh needs besides gcloud, for a PATH that lacks gcloud.
TOOLS = ("bash", "env", "find", "sed", "sort", "cp", "mkdir", "rm", "python3")


@pytest.fixture
def fake_gcloud(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    terraform = bin_dir / "terraform"
    terraform.write_text(TERRAFORM_STAND_IN)
    terraform.chmod(0o755)
    return tmp_path / "gcloud-calls.jsonl", bin_dir


def run(args, tmp_path, path, calls=None, extra_env=None):
    env = {"PATH": path, "HOME": str(tmp_path), "LC_ALL": "C"}
    if calls is not None:
        env["GCLOUD_CALLS"] = str(calls)
    env.update(extra_env or {})
    return subprocess.run(
        [BASH, str(DEPLOY), "--build-dir", str(tmp_path / "build"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )


def deploy(args, tmp_path, fake_gcloud, extra_env=None):
    calls, bin_dir = fake_gcloud
    proc = run(args, tmp_path, f"{bin_dir}:{os.environ['PATH']}", calls, extra_env)
    recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return proc, recorded


def flags(argv: list[str]) -> dict[str, list[str]]:
    """--name=value words -> {name: [values]}; bare flags map to ['']."""
    out: dict[str, list[str]] = {}
    for word in argv:
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            out.setdefault(name, []).append(value)
    return out


def env_vars(argv: list[str]) -> dict[str, str]:
    (spec,) = flags(argv)["set-env-vars"]
    return dict(pair.split("=", 1) for pair in spec.split(","))


def test_deploys_both_functions(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "my-landing"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert [c[:3] for c in calls] == [
        ["functions", "deploy", "game_lines"],
        ["functions", "deploy", "player_props"],
    ]
    for argv in calls:
        name = argv[2]
        f = flags(argv)
        assert f["entry-point"] == [name]
        assert f["gen2"] == [""]
        runtime = f["runtime"][0]
        assert runtime.startswith("python") and int(runtime.removeprefix("python3")) >= 12
        assert sorted(f["trigger-event-filters"]) == sorted([f"type={FINALIZED}", "bucket=my-landing"])
        assert f["retry"] == [""]
        assert f["ingress-settings"] == ["internal-only"]
        assert f["no-allow-unauthenticated"] == [""]
        assert f["project"] == ["my-proj"]
        assert f["region"] == ["us-central1"]
        assert f["source"] == [str(tmp_path / "build" / name)]
        sa = name.replace("_", "-")
        assert f["service-account"] == [f"oddsbatch-{sa}@my-proj.iam.gserviceaccount.com"]
        assert f["memory"] == ["512Mi"] and f["timeout"] == ["540s"]
        assert f["max-instances"] == ["10"] and f["concurrency"] == ["8"]
        assert f["cpu"] == ["1"]  # concurrency > 1 needs a whole CPU
        assert f["trigger-location"] == ["us"]  # the bucket's default location, US, not the region
        # the triggers run as Terraform's trigger account (eventReceiver + run.invoker), not the default one
        assert f["trigger-service-account"] == ["oddsbatch-trigger@my-proj.iam.gserviceaccount.com"]
        assert f["build-service-account"] == [
            "projects/my-proj/serviceAccounts/oddsbatch-build@my-proj.iam.gserviceaccount.com"]
        assert env_vars(argv) == {
            "ODDSBATCH_PROJECT": "my-proj",
            "ODDSBATCH_DATASET": "odds_api",
            "ODDSBATCH_SETTLE_SECONDS": "5",
            "ODDSBATCH_LEASE_SECONDS": "600",
            "ODDSBATCH_BUCKET": "my-landing",  # the handler ignores other buckets' events
            "ODDSBATCH_BIGQUERY_LOCATION": "US",
            "ODDSBATCH_TIMEOUT_SECONDS": "540",
            "THREADS": "8",
        }
        assert set(env_vars(argv)) <= set(SETTINGS_HELP) | RUNTIME_VARIABLES  # only variables the functions read
    assert "built " + str(tmp_path / "build" / "game_lines") in proc.stdout


def test_options_and_env_defaults(tmp_path, fake_gcloud):
    proc, calls = deploy(
        ["--only", "player_props", "--dataset", "odds_dev", "--service-account-player-props", "pp@x.iam.gserviceaccount.com",
         "--memory=1Gi", "--timeout", "300", "--max-instances", "3", "--concurrency", "4",
         "--settle-seconds", "0.5", "--lease-seconds", "400", "--trigger-location", "us",
         "--trigger-service-account", "trg@x.iam.gserviceaccount.com", "--bigquery-location", "EU"],
        tmp_path, fake_gcloud,
        extra_env={"ODDSBATCH_DEPLOY_PROJECT": "env-proj", "ODDSBATCH_DEPLOY_BUCKET": "env-bucket",
                   "ODDSBATCH_DEPLOY_REGION": "europe-west1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 1 and calls[0][2] == "player_props"
    f = flags(calls[0])
    assert f["project"] == ["env-proj"] and f["region"] == ["europe-west1"]
    assert "bucket=env-bucket" in f["trigger-event-filters"]
    assert f["service-account"] == ["pp@x.iam.gserviceaccount.com"]
    assert f["trigger-location"] == ["us"]
    assert f["trigger-service-account"] == ["trg@x.iam.gserviceaccount.com"]
    assert (f["memory"], f["timeout"], f["max-instances"], f["concurrency"]) == (["1Gi"], ["300s"], ["3"], ["4"])
    assert env_vars(calls[0]) == {
        "ODDSBATCH_PROJECT": "env-proj", "ODDSBATCH_DATASET": "odds_dev",
        "ODDSBATCH_SETTLE_SECONDS": "0.5", "ODDSBATCH_LEASE_SECONDS": "400", "ODDSBATCH_BUCKET": "env-bucket",
        "ODDSBATCH_BIGQUERY_LOCATION": "EU", "ODDSBATCH_TIMEOUT_SECONDS": "300", "THREADS": "4",
    }
    assert not (tmp_path / "build" / "game_lines").exists()


def test_only_deploys_one(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert [c[2] for c in calls] == ["game_lines"]


def test_dry_run_prints_two_commands_and_calls_nothing(tmp_path, fake_gcloud):
    proc, calls = deploy(["--dry-run", "--project", "my-proj", "--bucket", "my-landing"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("game_lines", "player_props")):
        argv = shlex.split(line)  # each line is one runnable shell command
        assert argv[:4] == ["gcloud", "functions", "deploy", name]
        assert flags(argv)["entry-point"] == [name]
        assert f"--trigger-event-filters=type={FINALIZED}" in argv
    # progress goes to stderr, so stdout can be piped to a shell
    assert proc.stderr.count("built ") == 2


def test_dry_run_needs_no_gcloud(tmp_path):
    proc = run(["--dry-run", "--project", "my-proj", "--bucket", "b1"], tmp_path, tool_path(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


def test_build_only_needs_no_project(tmp_path, fake_gcloud):
    proc, calls = deploy(["--build-only"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert [line.split(" (")[0] for line in proc.stdout.splitlines()] == [
        f"built {tmp_path / 'build' / 'game_lines'}", f"built {tmp_path / 'build' / 'player_props'}"]


def tool_path(tmp_path) -> str:
    """A PATH holding the tools deploy.sh uses, and no gcloud."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        link = bin_dir / tool
        if not link.exists():
            link.symlink_to(found)
    return str(bin_dir)


def one_line_error(proc) -> str:
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--bucket", "b1"], "--project"),
        (["--dry-run", "--bucket", "b1"], "--project"),
        (["--project", "my-proj"], "--bucket"),
        (["--project", "my-proj", "--bucket", "b1", "--frobnicate"], "unknown option: --frobnicate"),
        (["--project", "my-proj", "--bucket", "b1", "--only", "both"], "--only"),
        (["--project", "my-proj", "--bucket", "b1", "--region"], "--region needs a value"),
    ],
)
def test_usage_errors(tmp_path, fake_gcloud, args, needle):
    proc, calls = deploy(args, tmp_path, fake_gcloud)
    assert needle in one_line_error(proc)
    assert calls == []
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("lease, timeout", [("540", "540s"), ("300", "540"), ("100", "120s")])
def test_lease_must_exceed_timeout(tmp_path, fake_gcloud, lease, timeout):
    proc, calls = deploy(
        ["--project", "my-proj", "--bucket", "b1", "--lease-seconds", lease, "--timeout", timeout],
        tmp_path, fake_gcloud)
    assert "--lease-seconds" in one_line_error(proc)
    assert calls == []


def test_missing_gcloud_for_a_real_deploy(tmp_path):
    proc = run(["--project", "my-proj", "--bucket", "b1"], tmp_path, tool_path(tmp_path))
    assert "gcloud not found" in one_line_error(proc)
    assert not (tmp_path / "build").exists()


def test_help(tmp_path, fake_gcloud):
    proc, calls = deploy(["--help"], tmp_path, fake_gcloud)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and calls == []


def test_bash_syntax():
    subprocess.run([BASH, "-n", str(DEPLOY)], check=True)
