"""Google Cloud's deploy rules on the Terraform module, each with a mutated copy that fails it.

Rules (the page each one follows is cited beside its check):
- every resource waits for the API it calls (depends_on google_project_service.services["API"]);
- alert policies wait for their log-based metrics, plus the propagation sleep;
- the trigger account may invoke the functions from the first apply (run.invoker on the project);
- a least-privilege build service account exists, and its email is an output for deploy.sh.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from .conftest import TERRAFORM_DIR, TFVARS, hcl, one, raw_resource, resources, tfparse

# Resource type -> the API its calls go to. Project IAM bindings are Resource Manager calls
# (https://cloud.google.com/iam/docs/write-policy-client-libraries); the others are each
# service's own API ("Before you can use most Google APIs you must first enable them":
# https://cloud.google.com/service-usage/docs/overview).
API_OF = {
    "google_bigquery_dataset": "bigquery.googleapis.com",
    "google_bigquery_dataset_iam_member": "bigquery.googleapis.com",
    "google_bigquery_routine": "bigquery.googleapis.com",
    "google_bigquery_table": "bigquery.googleapis.com",
    "google_cloud_run_v2_service_iam_member": "run.googleapis.com",
    "google_cloud_scheduler_job": "cloudscheduler.googleapis.com",
    "google_eventarc_trigger": "eventarc.googleapis.com",
    "google_firestore_database": "firestore.googleapis.com",
    "google_firestore_field": "firestore.googleapis.com",
    "google_logging_metric": "logging.googleapis.com",
    "google_monitoring_alert_policy": "monitoring.googleapis.com",
    "google_project_iam_custom_role": "iam.googleapis.com",
    "google_project": "cloudresourcemanager.googleapis.com",
    "google_project_iam_member": "cloudresourcemanager.googleapis.com",
    # The identity of a service is made once that service is enabled.
    "google_project_service_identity": "pubsub.googleapis.com",
    "google_pubsub_subscription": "pubsub.googleapis.com",
    "google_pubsub_topic": "pubsub.googleapis.com",
    "google_pubsub_topic_iam_member": "pubsub.googleapis.com",
    "google_pubsub_subscription_iam_member": "pubsub.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_storage_bucket": "storage.googleapis.com",
    "google_storage_bucket_iam_member": "storage.googleapis.com",
    "google_storage_project_service_account": "storage.googleapis.com",
}
# No API of their own: the enablement itself, and the sleep.
NO_API = {"google_project_service", "time_sleep"}
# Resources that depend on another resource of the same API, which itself waits for it.
INHERITS = {("google_bigquery_table", "latest"), ("google_bigquery_routine", "stage0"), ("google_bigquery_routine", "stage1")}
API_REF = re.compile(r'^\$\{google_project_service\.services\["(?P<api>[a-z0-9.]+)"\]\}$')


def _unquote(label: str) -> str:
    return label.strip('"')


def _blocks(raw: dict):
    for filename, body in raw.items():
        for kind in ("resource", "data"):
            for entry in body.get(kind, []):
                for tf_type, named in entry.items():
                    for name, block in named.items():
                        yield filename, kind, _unquote(tf_type), _unquote(name), block


def _services(raw: dict) -> set[str]:
    for body in raw.values():
        for entry in body.get("locals", []):
            if "services" in entry:
                return {_unquote(s) for s in entry["services"]}
    raise AssertionError("local.services not found")


def api_problems(raw: dict) -> list[str]:
    problems = []
    enabled = _services(raw)
    for filename, kind, tf_type, name, block in _blocks(raw):
        if tf_type in NO_API or (tf_type, name) in INHERITS:
            continue
        where = f"{filename}: {'data.' if kind == 'data' else ''}{tf_type}.{name}"
        api = API_OF.get(tf_type)
        if api is None:
            problems.append(f"{where}: no API known for {tf_type} (add it to API_OF)")
            continue
        deps = {m["api"] for d in block.get("depends_on", []) if (m := API_REF.match(d))}
        if api not in deps:
            problems.append(f"{where}: does not depend on google_project_service.services[\"{api}\"]")
        for dep in deps - enabled:
            problems.append(f"{where}: depends on {dep}, which local.services does not enable")
    for api in set(API_OF.values()) - enabled:
        problems.append(f"services.tf: {api} is not enabled")
    return problems


def _copy(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    return copy


def test_every_resource_depends_on_the_api_it_needs(raw):
    checked = sum(1 for _, _, t, n, _ in _blocks(raw) if t not in NO_API and (t, n) not in INHERITS)
    assert api_problems(raw) == []
    assert checked >= 20


def test_a_resource_without_its_api_dependency_fails(tmp_path):
    copy = _copy(tmp_path)
    fs = copy / "firestore.tf"
    text = fs.read_text()
    assert text.count('depends_on = [google_project_service.services["firestore.googleapis.com"]]') == 1
    fs.write_text(text.replace('  depends_on = [google_project_service.services["firestore.googleapis.com"]]\n', "", 1))
    problems = api_problems(hcl(copy))
    assert any("google_firestore_field.ttl: does not depend on" in p for p in problems), problems


def test_an_api_missing_from_the_enabled_list_fails(tmp_path):
    copy = _copy(tmp_path)
    services = copy / "services.tf"
    services.write_text(services.read_text().replace('    "cloudresourcemanager.googleapis.com",\n', ""))
    problems = api_problems(hcl(copy))
    assert "services.tf: cloudresourcemanager.googleapis.com is not enabled" in problems, problems
    assert any("which local.services does not enable" in p for p in problems), problems


# --- alert policies wait for their metrics ---------------------------------------------

def metric_wait_problems(raw: dict, tf: dict) -> list[str]:
    """Policies created within minutes of their log-based metric fail with 404 "Cannot find
    metric(s) ... it could take up to 10 minutes to become available" and the provider does
    not retry: https://github.com/hashicorp/terraform-provider-google/issues/11102."""
    problems = []
    blocks = {(t, n): b for _, _, t, n, b in _blocks(raw)}
    alerts = blocks.get(("google_monitoring_alert_policy", "alerts"), {})
    sleep = blocks.get(("time_sleep", "metrics_propagation"))
    if "${google_logging_metric.metrics}" not in alerts.get("depends_on", []):
        problems.append("alert policies do not depend on google_logging_metric.metrics explicitly")
    if "${time_sleep.metrics_propagation}" not in alerts.get("depends_on", []):
        problems.append("alert policies do not wait for time_sleep.metrics_propagation")
    if sleep is None:
        return problems + ["no time_sleep.metrics_propagation"]
    if "${google_logging_metric.metrics}" not in sleep.get("depends_on", []):
        problems.append("the sleep does not start after the metrics")
    waits = [s for s in tf.get("time_sleep", []) if s["__tfmeta"]["path"] == "time_sleep.metrics_propagation"]
    seconds = int(waits[0]["create_duration"].removesuffix("s")) if waits else 0
    if seconds < 600:
        problems.append(f"the sleep waits {seconds}s, less than the 10 minutes a new metric may take")
    return problems


def test_alert_policies_wait_for_their_metrics(raw, tf):
    assert metric_wait_problems(raw, tf) == []
    sleep = one(tf, "time_sleep.metrics_propagation")
    assert sorted(sleep["triggers"]) == ["auth_errors", "failed_batches", "oldest_pending", "quarantined_files",
                                         "stale_locks", "transient_failures"]


def test_alert_policies_without_the_wait_fail(tmp_path):
    copy = _copy(tmp_path)
    mon = copy / "monitoring.tf"
    text = mon.read_text()
    assert "    time_sleep.metrics_propagation,\n" in text
    mon.write_text(text.replace("    time_sleep.metrics_propagation,\n", ""))
    tfvars = tmp_path / "short.tfvars"
    tfvars.write_text(TFVARS.read_text() + "alerts = { metric_wait_seconds = 30 }\n")
    problems = metric_wait_problems(hcl(copy), tfparse(copy, tfvars))
    assert "alert policies do not wait for time_sleep.metrics_propagation" in problems, problems
    assert any("waits 30s" in p for p in problems), problems


# --- the trigger account may invoke the functions from the first apply ----------------------
# The trigger identity needs Cloud Run Invoker to call an authenticated function
# (https://cloud.google.com/eventarc/standard/docs/functions/roles-permissions). Bound on the
# project by Terraform, it exists before deploy.sh creates the services and their triggers: no
# 403 window and no second apply.

def invoker_problems(tf: dict) -> list[str]:
    problems = []
    bindings = [b for b in resources(tf, "google_project_iam_member").values() if b["role"] == "roles/run.invoker"]
    if [b["__tfmeta"]["path"] for b in bindings] != ["google_project_iam_member.trigger_invoker"]:
        problems.append(f"run.invoker is not bound on the project for the trigger account: {bindings}")
    if resources(tf, "google_cloud_run_v2_service_iam_member"):
        problems.append("run.invoker on Cloud Run services that exist only after deploy.sh")
    if any(v["__tfmeta"]["label"] == "functions_deployed" for v in tf.get("variable", [])):
        problems.append("a variable still asks for a second apply (functions_deployed)")
    return problems


def test_the_invoker_binding_needs_no_deployed_function(raw):
    for tfvars in (TFVARS, TERRAFORM_DIR / "terraform.tfvars.example"):
        tf = tfparse(TERRAFORM_DIR, tfvars)
        assert invoker_problems(tf) == []
    assert raw_resource(raw, "google_project_iam_member", "trigger_invoker")["member"] == "${google_service_account.trigger.member}"


def test_an_invoker_binding_on_the_services_fails(tmp_path):
    # Negative control: the old per-service binding, behind a second apply.
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    iam = copy / "iam.tf"
    text = iam.read_text()
    old = 'resource "google_project_iam_member" "trigger_invoker" {\n  project    = var.project_id\n'
    assert old in text
    iam.write_text(text.replace(old, 'resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {\n'
                                     '  for_each   = var.functions\n  name       = each.value.service_name\n'
                                     '  location   = var.region\n  project    = var.project_id\n'))
    problems = invoker_problems(tfparse(copy, TFVARS))
    assert any("not bound on the project" in p for p in problems), problems
    assert "run.invoker on Cloud Run services that exist only after deploy.sh" in problems


# --- least-privilege build service account ---------------------------------------------

# A function build writes its logs, pushes its image to Artifact Registry and reads the
# uploaded source: https://cloud.google.com/functions/1stgendocs/securing/build-custom-sa,
# https://cloud.google.com/run/docs/configuring/services/build-service-account
BUILD_ROLES = ["roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectViewer"]


def build_role_problems(tf: dict, raw: dict) -> list[str]:
    problems = []
    accounts = resources(tf, "google_service_account")
    if "google_service_account.build" not in accounts:
        return ["no google_service_account.build"]
    blocks = {(t, n): b for _, _, t, n, b in _blocks(raw)}
    member = blocks.get(("google_project_iam_member", "build"), {}).get("member")
    if member != "${google_service_account.build.member}":
        problems.append(f"build roles are not bound to the build account: {member!r}")
    roles = sorted(r["role"] for a, r in resources(tf, "google_project_iam_member").items()
                   if a.startswith("google_project_iam_member.build["))
    if roles != BUILD_ROLES:
        problems.append(f"build account roles {roles} != {BUILD_ROLES}")
    return problems


def test_build_account_has_exactly_the_roles_a_function_build_needs(tf, raw):
    assert build_role_problems(tf, raw) == []
    assert one(tf, "google_service_account.build")["account_id"] == "oddsbatch-build"
    outputs = {o["__tfmeta"]["label"]: o for o in tf["output"]}
    assert "build_service_account" in outputs and "bucket_location" in outputs
    assert outputs["bucket_location"]["value"] == "US"


def test_a_broader_build_role_fails(tmp_path):
    copy = _copy(tmp_path)
    iam = copy / "iam.tf"
    text = iam.read_text()
    assert '"roles/storage.objectViewer"])' in text
    iam.write_text(text.replace('"roles/storage.objectViewer"])', '"roles/storage.objectViewer", "roles/editor"])'))
    problems = build_role_problems(tfparse(copy, TFVARS), hcl(copy))
    assert any("roles/editor" in p for p in problems), problems


@pytest.mark.parametrize("schema_file", ["google_provider_schema.json", "time_provider_schema.json"])
def test_provider_schemas_name_their_provider(schema_file):
    from .conftest import SCHEMA_JSON

    schema = json.loads((SCHEMA_JSON.parent / schema_file).read_text())
    assert schema["provider"] == f"hashicorp/{schema_file.split('_')[0]}"
