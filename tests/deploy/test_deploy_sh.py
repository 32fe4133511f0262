"""deploy.sh against a `gcloud` stand-in: the commands it runs, its dry run, its usage errors.

Every run puts a stand-in first on PATH (it appends its argv as one JSON array per call to
$GCLOUD_CALLS, and answers the describe calls the dead-letter step makes from environment
variables keyed by the subcommand); the real gcloud of the machine is never reached.
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

STAND_IN = """#!/usr/bin/env python3
# gcloud stand-in: one JSON array of argv per call. A describe (or list) call prints
# $GCLOUD_OUT_<words up to describe, joined by _> when it is set ({id}: the last path segment of
# the described resource), as `--format=value(...)` prints one field.
import json, os, sys

args = sys.argv[1:]
with open(os.environ["GCLOUD_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
verb = next((v for v in ("describe", "list") if v in args), None)
if verb:
    i = args.index(verb)
    out = os.environ.get("GCLOUD_OUT_" + "_".join(args[: i + 1]))
    if out:
        resource = args[i + 1] if i + 1 < len(args) else ""
        print(out.replace("{id}", resource.rsplit("/", 1)[-1]))
"""

# What the describe calls answer by default: a trigger per function in the bucket's location,
# Eventarc's subscription of it, the project's number.
PROJECT_NUMBER = "123456789012"
DESCRIBE_OUTPUTS = {
    "GCLOUD_OUT_functions_describe": "projects/my-proj/locations/us/triggers/{id}-412",
    "GCLOUD_OUT_eventarc_triggers_describe": "projects/my-proj/subscriptions/eventarc-us-{id}-sub-7",
    "GCLOUD_OUT_projects_describe": PROJECT_NUMBER,
}
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

# terraform stand-in: `output -json` prints $FAKE_TF_OUTPUTS_JSON (what `terraform output -json`
# prints after an apply), or it acts like a directory without state (terraform's warning on
# stdout, status 0).
TERRAFORM_STAND_IN = """#!/usr/bin/env bash
if [[ " $* " == *" -json "* && -n "${FAKE_TF_OUTPUTS_JSON:-}" ]]; then printf '%s' "$FAKE_TF_OUTPUTS_JSON"; exit 0; fi
echo 'Warning: No outputs found'
"""


def terraform_outputs(**values) -> str:
    """The JSON `terraform output -json` prints for these output values."""
    return json.dumps({k: {"sensitive": False, "type": "string", "value": v} for k, v in values.items()})


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
    env.update(DESCRIBE_OUTPUTS)
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


def deploys(calls: list[list[str]]) -> list[list[str]]:
    """The `gcloud functions deploy` calls among all recorded calls."""
    return [c for c in calls if c[:2] == ["functions", "deploy"]]


def dead_letter_calls(fn: str, project: str = "my-proj", topic: str | None = None, attempts: str = "50",
                      region: str = "us-central1") -> list[list[str]]:
    """What the dead-letter step must run after `fn`'s deploy, with the default describe outputs."""
    trigger = f"projects/my-proj/locations/us/triggers/{fn}-412"
    sub = f"projects/my-proj/subscriptions/eventarc-us-{fn}-412-sub-7"
    return [
        ["functions", "describe", fn, "--gen2", f"--region={region}", f"--project={project}",
         "--format=value(eventTrigger.trigger)"],
        ["eventarc", "triggers", "describe", trigger, "--format=value(transport.pubsub.subscription)"],
        ["pubsub", "subscriptions", "update", sub,
         f"--dead-letter-topic={topic or f'projects/{project}/topics/oddsbatch-dead-letters'}",
         f"--max-delivery-attempts={attempts}", "--ack-deadline=600"],
        ["projects", "describe", project, "--format=value(projectNumber)"],
        ["pubsub", "subscriptions", "add-iam-policy-binding", sub, "--role=roles/pubsub.subscriber",
         f"--member={PUBSUB_AGENT}"],
    ]


def sweep_calls(fn: str, project: str = "my-proj", region: str = "us-central1",
                topic: str | None = None) -> list[list[str]]:
    """What the sweep-trigger step runs after `fn`'s dead-letter step when the trigger is new
    (the stand-in's list prints nothing), with the default describe outputs."""
    name = f"oddsbatch-sweep-{fn.replace('_', '-')}"
    return [
        ["eventarc", "triggers", "list", f"--location={region}", f"--project={project}", f"--filter=name:{name}",
         "--format=value(name)"],
        ["eventarc", "triggers", "create", name, f"--location={region}", f"--project={project}",
         f"--destination-run-service={fn.replace('_', '-')}", f"--destination-run-region={region}",
         "--event-filters=type=google.cloud.pubsub.topic.v1.messagePublished",
         f"--transport-topic={topic or f'projects/{project}/topics/oddsbatch-sweep'}",
         f"--service-account=oddsbatch-trigger@{project}.iam.gserviceaccount.com"],
        ["eventarc", "triggers", "describe", name, f"--location={region}", f"--project={project}",
         "--format=value(transport.pubsub.subscription)"],
        ["pubsub", "subscriptions", "update", f"projects/my-proj/subscriptions/eventarc-us-{name}-sub-7", "--ack-deadline=600"],
    ]


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
    assert [c[:3] for c in deploys(calls)] == [
        ["functions", "deploy", "game_lines"],
        ["functions", "deploy", "player_props"],
    ]
    for argv in deploys(calls):
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
        # Without Terraform's outputs: the module's defaults, every one passed explicitly.
        assert env_vars(argv) == {
            "ODDSBATCH_PROJECT": "my-proj",
            "ODDSBATCH_DATASET": "odds_api",
            "ODDSBATCH_SETTLE_SECONDS": "5",
            "ODDSBATCH_LEASE_SECONDS": "600",
            "ODDSBATCH_BUCKET": "my-landing",  # the handler ignores other buckets' events
            "ODDSBATCH_BIGQUERY_LOCATION": "US",
            "ODDSBATCH_FIRESTORE_DATABASE": "(default)",
            "ODDSBATCH_FENCE_COLLECTION": "oddsbatch_fences",
            "ODDSBATCH_LEDGER_COLLECTION": "oddsbatch_merged",
            "ODDSBATCH_LOCK_COLLECTION": "oddsbatch_locks",
            "ODDSBATCH_PENDING_COLLECTION": "oddsbatch_pending",
            "ODDSBATCH_RUNS_COLLECTION": "oddsbatch_runs",
            "ODDSBATCH_SWEEP_COLLECTION": "oddsbatch_sweeps",
            "ODDSBATCH_QUARANTINE_BUCKET": "my-landing",
            "ODDSBATCH_QUARANTINE_PREFIX": "quarantine/",
            "ODDSBATCH_STAGING_BUCKET": "my-landing-staging",  # the module's NAME-staging (storage.tf)
            "ODDSBATCH_TIMEOUT_SECONDS": "540",
            "ODDSBATCH_INSTANCE_MEMORY": "512Mi",  # the memory budget follows the tier (config.py)
            # the sweep drains the dead letters (the module's default subscription)
            "ODDSBATCH_DEAD_LETTER_SUBSCRIPTION": "projects/my-proj/subscriptions/oddsbatch-dead-letters",
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
    calls = deploys(calls)
    assert len(calls) == 1 and calls[0][2] == "player_props"
    f = flags(calls[0])
    assert f["project"] == ["env-proj"] and f["region"] == ["europe-west1"]
    assert "bucket=env-bucket" in f["trigger-event-filters"]
    assert f["service-account"] == ["pp@x.iam.gserviceaccount.com"]
    assert f["trigger-location"] == ["us"]
    assert f["trigger-service-account"] == ["trg@x.iam.gserviceaccount.com"]
    assert (f["memory"], f["timeout"], f["max-instances"], f["concurrency"]) == (["1Gi"], ["300s"], ["3"], ["4"])
    env = env_vars(calls[0])
    assert {k: env[k] for k in ("ODDSBATCH_PROJECT", "ODDSBATCH_DATASET", "ODDSBATCH_SETTLE_SECONDS",
                                "ODDSBATCH_LEASE_SECONDS", "ODDSBATCH_BUCKET", "ODDSBATCH_BIGQUERY_LOCATION",
                                "ODDSBATCH_TIMEOUT_SECONDS", "THREADS")} == {
        "ODDSBATCH_PROJECT": "env-proj", "ODDSBATCH_DATASET": "odds_dev",
        "ODDSBATCH_SETTLE_SECONDS": "0.5", "ODDSBATCH_LEASE_SECONDS": "400", "ODDSBATCH_BUCKET": "env-bucket",
        "ODDSBATCH_BIGQUERY_LOCATION": "EU", "ODDSBATCH_TIMEOUT_SECONDS": "300", "THREADS": "4",
    }
    assert not (tmp_path / "build" / "game_lines").exists()


def test_only_deploys_one(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert [c[2] for c in deploys(calls)] == ["game_lines"]
    assert calls[1:] == dead_letter_calls("game_lines") + sweep_calls("game_lines")


DEAD_LETTER_LINES = 5  # per function after its deploy line in a dry run
SWEEP_LINES = 3  # per function after its dead-letter lines
PER_FUNCTION = 1 + DEAD_LETTER_LINES + SWEEP_LINES


def test_dry_run_prints_the_commands_and_calls_nothing(tmp_path, fake_gcloud):
    proc, calls = deploy(["--dry-run", "--project", "my-proj", "--bucket", "my-landing"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 * PER_FUNCTION
    for line in lines:
        shlex.split(line)  # each line is shell
    for line, name in zip(lines[::PER_FUNCTION], ("game_lines", "player_props")):
        argv = shlex.split(line)  # each line is one runnable shell command
        assert argv[:4] == ["gcloud", "functions", "deploy", name]
        assert flags(argv)["entry-point"] == [name]
        assert f"--trigger-event-filters=type={FINALIZED}" in argv
    # progress goes to stderr, so stdout can be piped to a shell
    assert proc.stderr.count("built ") == 2


def test_dry_run_needs_no_gcloud(tmp_path):
    proc = run(["--dry-run", "--project", "my-proj", "--bucket", "b1"], tmp_path, tool_path(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 * PER_FUNCTION


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


# --- the dead-letter policy on each function's Eventarc subscription --------------------

def test_each_deploy_is_followed_by_its_dead_letter_policy(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "my-landing"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls[0][:3] == ["functions", "deploy", "game_lines"]
    assert calls[10][:3] == ["functions", "deploy", "player_props"]
    # deploy, describe, triggers describe, subscriptions update, projects describe, grant: in
    # order, then the sweep trigger: list, create, describe, ack deadline
    assert calls[1:10] == dead_letter_calls("game_lines") + sweep_calls("game_lines")
    assert calls[11:] == dead_letter_calls("player_props") + sweep_calls("player_props")
    assert ("dead letters of game_lines: projects/my-proj/subscriptions/eventarc-us-game_lines-412-sub-7 -> "
            "projects/my-proj/topics/oddsbatch-dead-letters after 50 attempts") in proc.stdout.splitlines()


def test_dead_letter_topic_none_skips_the_step(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--dead-letter-topic", "none"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls == [calls[0], *sweep_calls("game_lines"), calls[5], *sweep_calls("player_props")]
    assert [c[:2] for c in (calls[0], calls[5])] == [["functions", "deploy"], ["functions", "deploy"]]
    proc, _ = deploy(["--dry-run", "--project", "my-proj", "--bucket", "b1", "--dead-letter-topic=none"],
                     tmp_path, fake_gcloud)
    lines = proc.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:: 1 + SWEEP_LINES]] == [["gcloud", "functions", "deploy"]] * 2
    assert len(lines) == 2 * (1 + SWEEP_LINES)


def test_topic_and_attempts_options(tmp_path, fake_gcloud):
    topic = "projects/other-proj/topics/my-dlq"
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines",
                          "--dead-letter-topic", topic, "--max-delivery-attempts", "7"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls[1:] == dead_letter_calls("game_lines", topic=topic, attempts="7") + sweep_calls("game_lines")


def test_dead_letter_topic_comes_from_terraform_when_it_has_a_state(tmp_path, fake_gcloud):
    tf_topic = "projects/my-proj/topics/tf-dead-letters"
    outputs = terraform_outputs(dead_letter_topic=tf_topic, bucket_location="US")
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines"], tmp_path, fake_gcloud,
                         extra_env={"FAKE_TF_OUTPUTS_JSON": outputs})
    assert proc.returncode == 0, proc.stderr
    assert flags(calls[3])["dead-letter-topic"] == [tf_topic]
    # the same topic as a flag is accepted; another one contradicts Terraform and is refused
    proc, _ = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines", "--dead-letter-topic", tf_topic],
                     tmp_path, fake_gcloud, extra_env={"FAKE_TF_OUTPUTS_JSON": outputs})
    assert proc.returncode == 0, proc.stderr
    proc, _ = deploy(["--project", "my-proj", "--bucket", "b1", "--dead-letter-topic", "projects/my-proj/topics/mine"],
                     tmp_path, fake_gcloud, extra_env={"FAKE_TF_OUTPUTS_JSON": outputs})
    assert "contradicts Terraform's output dead_letter_topic" in one_line_error(proc)
    # none still skips the step; a state printing no JSON is ignored
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines", "--dead-letter-topic", "none"],
                         tmp_path, fake_gcloud, extra_env={"FAKE_TF_OUTPUTS_JSON": outputs})
    assert proc.returncode == 0 and calls[-5][:2] == ["functions", "deploy"], proc.stderr
    assert not [c for c in calls[-5:] if any(w.startswith("--dead-letter-topic") for w in c)]
    _, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--only", "game_lines"], tmp_path, fake_gcloud,
                      extra_env={"FAKE_TF_OUTPUTS_JSON": "Warning: No outputs found"})
    assert flags(calls[-7])["dead-letter-topic"] == ["projects/my-proj/topics/oddsbatch-dead-letters"]


@pytest.mark.parametrize("value", ["my-dlq", "topics/my-dlq", "projects/my-proj/subscriptions/x", "projects//topics/x", ""])
def test_a_malformed_dead_letter_topic_is_refused(tmp_path, fake_gcloud, value):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--dead-letter-topic", value], tmp_path, fake_gcloud)
    if value == "":  # empty means the default
        assert proc.returncode == 0, proc.stderr
        return
    assert "--dead-letter-topic" in one_line_error(proc)
    assert calls == []
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("key, what", [
    ("GCLOUD_OUT_functions_describe", "trigger"),
    ("GCLOUD_OUT_eventarc_triggers_describe", "subscription"),
    ("GCLOUD_OUT_projects_describe", "project number"),
])
def test_a_describe_that_prints_nothing_fails_with_one_line(tmp_path, fake_gcloud, key, what):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1"], tmp_path, fake_gcloud, extra_env={key: ""})
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert f"printed no {what}" in line
    assert "--dry-run --only game_lines" in line and "by hand" in line  # what to run by hand
    # it stops at once: nothing after the empty describe, and player_props is not deployed
    expected = [["functions", "deploy", "game_lines"]] + dead_letter_calls("game_lines")
    n = {"trigger": 2, "subscription": 3, "project number": 5}[what]
    assert [c[:3] for c in calls] == [c[:3] for c in expected[:n]]


def test_a_describe_that_prints_something_else_fails_with_one_line(tmp_path, fake_gcloud):
    proc, calls = deploy(["--project", "my-proj", "--bucket", "b1"], tmp_path, fake_gcloud,
                         extra_env={"GCLOUD_OUT_functions_describe": "ERROR: (gcloud) not found"})
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert "not a trigger" in line
    assert len(calls) == 2


def test_dry_run_lines_run_the_same_commands_as_a_deploy(tmp_path, fake_gcloud):
    args = ["--project", "my-proj", "--bucket", "my-landing", "--max-delivery-attempts", "20"]
    proc, real = deploy(args, tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    dry, none = deploy(["--dry-run", *args], tmp_path, fake_gcloud)
    assert dry.returncode == 0, dry.stderr
    assert none == real  # the dry run called nothing (the calls file holds the real run's only)
    lines = dry.stdout.splitlines()
    assert [line.split()[:3] for line in lines[1:1 + DEAD_LETTER_LINES]] == [
        ['TRIGGER="$(gcloud', "functions", "describe"],
        ['SUB="$(gcloud', "eventarc", "triggers"],
        ["gcloud", "pubsub", "subscriptions"],
        ['PROJECT_NUMBER="$(gcloud', "projects", "describe"],
        ["gcloud", "pubsub", "subscriptions"],
    ]
    assert [line.split()[:4] for line in lines[1 + DEAD_LETTER_LINES:PER_FUNCTION]] == [
        ["if", "[", "-z", '"$(gcloud'],
        ['SWEEP_SUB="$(gcloud', "eventarc", "triggers", "describe"],
        ["gcloud", "pubsub", "subscriptions", "update"],
    ]
    # Piped to a shell with the stand-in first on PATH, the lines make exactly the real run's calls.
    calls_file, bin_dir = fake_gcloud
    replayed = tmp_path / "replayed.jsonl"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "GCLOUD_CALLS": str(replayed),
           **DESCRIBE_OUTPUTS}
    subprocess.run([BASH, "-euo", "pipefail"], input=dry.stdout, text=True, env=env, check=True, timeout=30)
    assert [json.loads(line) for line in replayed.read_text().splitlines()] == real


def test_max_delivery_attempts_must_be_a_whole_number(tmp_path, fake_gcloud):
    for value in ("x", "50.5", "-7", "050", ""):
        proc, calls = deploy(["--project", "my-proj", "--bucket", "b1", "--max-delivery-attempts", value],
                             tmp_path, fake_gcloud)
        assert "--max-delivery-attempts" in one_line_error(proc), value
        assert calls == []
