"""Google Cloud's deploy rules on deploy.sh, each with a negative control.

- A Cloud Storage trigger sits in its bucket's location, named like it in lowercase.
- Builds run as Terraform's build service account, passed as a resource name.
- THREADS equals the deployed concurrency (functions-framework reads it), and the holder's
  deadline ODDSBATCH_TIMEOUT_SECONDS equals the function timeout.
- The dead-letter policy: 5 to 100 delivery attempts, a topic named projects/P/topics/T, and
  the project's Pub/Sub service agent made subscriber on the trigger's subscription.
"""

from __future__ import annotations

import shlex

import pytest

from .test_deploy_sh import (  # noqa: F401  (fake_gcloud is a fixture)
    PER_FUNCTION, PROJECT_NUMBER, deploy, deploys, env_vars, fake_gcloud, flags, one_line_error,
    terraform_outputs)

BASE = ["--project", "my-proj", "--bucket", "my-landing"]


# The trigger of a bucket event is created in the bucket's location
# (https://cloud.google.com/eventarc/docs/understand-locations); Cloud Storage triggers exist in
# single-, dual- and multi-region locations (https://cloud.google.com/eventarc/docs/locations),
# the bucket location codes being those of https://cloud.google.com/storage/docs/locations.
@pytest.mark.parametrize("bucket_location, trigger", [
    ("US", "us"), ("EU", "eu"), ("ASIA", "asia"),             # multi-regions
    ("NAM4", "nam4"), ("EUR4", "eur4"), ("ASIA1", "asia1"),   # dual-regions
    ("US-CENTRAL1", "us-central1"), ("europe-west1", "europe-west1"), ("NORTHAMERICA-NORTHEAST1", "northamerica-northeast1"),
])
def test_trigger_location_is_the_buckets(tmp_path, fake_gcloud, bucket_location, trigger):
    proc, calls = deploy([*BASE, "--bucket-location", bucket_location], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    calls = deploys(calls)
    assert [flags(c)["trigger-location"] for c in calls] == [[trigger], [trigger]]
    assert [flags(c)["region"] for c in calls] == [["us-central1"], ["us-central1"]]  # the function stays in its region


def test_bucket_location_comes_from_terraform_when_it_has_a_state(tmp_path, fake_gcloud):
    outputs = {"FAKE_TF_OUTPUTS_JSON": terraform_outputs(bucket_location="EU")}
    proc, calls = deploy(BASE, tmp_path, fake_gcloud, extra_env=outputs)
    assert proc.returncode == 0, proc.stderr
    assert {flags(c)["trigger-location"][0] for c in deploys(calls)} == {"eu"}
    # an explicit --bucket-location that contradicts the state is refused, one that agrees is fine
    proc, calls = deploy([*BASE, "--bucket-location", "ASIA"], tmp_path, fake_gcloud, extra_env=outputs)
    assert "contradicts Terraform's output bucket_location = EU" in one_line_error(proc)
    proc, _ = deploy([*BASE, "--bucket-location", "eu"], tmp_path, fake_gcloud, extra_env=outputs)
    assert proc.returncode == 0, proc.stderr


def test_without_a_state_the_modules_default_us_is_used(tmp_path, fake_gcloud):
    # terraform without state prints a warning with status 0: it is not taken for a location
    proc, calls = deploy(BASE, tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert {flags(c)["trigger-location"][0] for c in deploys(calls)} == {"us"}


@pytest.mark.parametrize("args", [
    ["--trigger-location", "us-central1"],                                  # the region, the old default: wrong for US
    ["--bucket-location", "EU", "--trigger-location", "us"],
    ["--bucket-location", "US-EAST1", "--trigger-location", "us"],
])
def test_a_trigger_location_that_contradicts_the_bucket_is_refused(tmp_path, fake_gcloud, args):
    proc, calls = deploy([*BASE, *args], tmp_path, fake_gcloud)
    assert "contradicts the bucket's location" in one_line_error(proc)
    assert calls == []


def test_a_matching_trigger_location_is_accepted(tmp_path, fake_gcloud):
    proc, calls = deploy([*BASE, "--bucket-location", "EU", "--trigger-location", "eu"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert {flags(c)["trigger-location"][0] for c in deploys(calls)} == {"eu"}


@pytest.mark.parametrize("location", ["gs://x", "US_CENTRAL1", "us central1", "-us"])
def test_a_malformed_bucket_location_is_refused(tmp_path, fake_gcloud, location):
    proc, calls = deploy([*BASE, "--bucket-location", location], tmp_path, fake_gcloud)
    assert "--bucket-location" in one_line_error(proc)
    assert calls == []


# gcloud wants the build account as projects/P/serviceAccounts/EMAIL
# (https://cloud.google.com/sdk/gcloud/reference/functions/deploy); new projects' default
# build account may lack what a function build needs
# (https://cloud.google.com/functions/docs/securing/build-custom-sa).
@pytest.mark.parametrize("given, passed", [
    (None, "projects/my-proj/serviceAccounts/oddsbatch-build@my-proj.iam.gserviceaccount.com"),
    ("b@x.iam.gserviceaccount.com", "projects/my-proj/serviceAccounts/b@x.iam.gserviceaccount.com"),
    ("projects/other/serviceAccounts/b@other.iam.gserviceaccount.com", "projects/other/serviceAccounts/b@other.iam.gserviceaccount.com"),
])
def test_build_service_account(tmp_path, fake_gcloud, given, passed):
    args = [*BASE] + (["--build-service-account", given] if given else [])
    proc, calls = deploy(args, tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert [flags(c)["build-service-account"] for c in deploys(calls)] == [[passed], [passed]]


def test_a_malformed_build_service_account_is_refused(tmp_path, fake_gcloud):
    proc, calls = deploy([*BASE, "--build-service-account", "not an account"], tmp_path, fake_gcloud)
    assert "--build-service-account" in one_line_error(proc)
    assert calls == []


@pytest.mark.parametrize("concurrency, timeout", [("8", "540s"), ("3", "120"), ("16", "300s")])
def test_threads_and_timeout_follow_the_deployed_values(tmp_path, fake_gcloud, concurrency, timeout):
    proc, calls = deploy([*BASE, "--concurrency", concurrency, "--timeout", timeout, "--lease-seconds", "600"],
                         tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    for argv in deploys(calls):
        env = env_vars(argv)
        assert env["THREADS"] == flags(argv)["concurrency"][0] == concurrency
        assert f"{env['ODDSBATCH_TIMEOUT_SECONDS']}s" == flags(argv)["timeout"][0] == f"{timeout.rstrip('s')}s"


def _gunicorn_threads(monkeypatch, env: dict[str, str], cpus: int) -> int:
    """The threads functions-framework's gunicorn app runs with, for an environment."""
    from functions_framework._http import gunicorn

    monkeypatch.setattr(gunicorn.os, "cpu_count", lambda: cpus)
    monkeypatch.delenv("THREADS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return gunicorn.GunicornApplication(app=None, host="127.0.0.1", port=0, debug=False).options["threads"]


def test_functions_framework_serves_threads_requests_at_once(monkeypatch):
    # functions-framework 3.10.2: threads = int($THREADS or 4 * cpu_count)
    # (functions_framework/_http/gunicorn.py; functions-framework-python PR 259).
    assert _gunicorn_threads(monkeypatch, {"THREADS": "8"}, cpus=1) == 8
    # Negative control: without THREADS, one CPU serves 4, not the deployed concurrency 8.
    assert _gunicorn_threads(monkeypatch, {}, cpus=1) == 4


def test_acceptance_dry_run(tmp_path, fake_gcloud):
    proc, calls = deploy(["--dry-run", "--project", "p", "--bucket", "b"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 * PER_FUNCTION
    for line in lines[::PER_FUNCTION]:
        argv = shlex.split(line)
        assert "--trigger-location=us" in argv
        assert "--build-service-account=projects/p/serviceAccounts/oddsbatch-build@p.iam.gserviceaccount.com" in argv
        assert env_vars(argv)["THREADS"] == "8"


# A dead-letter policy allows 5 to 100 delivery attempts
# (https://cloud.google.com/pubsub/docs/dead-letter-topics;
# https://cloud.google.com/python/docs/reference/pubsub/2.15.1/google.cloud.pubsub_v1.types.DeadLetterPolicy).
@pytest.mark.parametrize("attempts", ["5", "50", "100"])
def test_delivery_attempts_within_pubsubs_bounds_are_passed(tmp_path, fake_gcloud, attempts):
    proc, calls = deploy([*BASE, "--max-delivery-attempts", attempts], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    updates = [c for c in calls if c[:3] == ["pubsub", "subscriptions", "update"] and any(w.startswith("--dead-letter-topic=") for w in c)]
    assert [flags(c)["max-delivery-attempts"] for c in updates] == [[attempts], [attempts]]


@pytest.mark.parametrize("attempts", ["4", "101", "0", "1000"])  # negative controls: just outside the bounds
def test_delivery_attempts_outside_pubsubs_bounds_are_refused(tmp_path, fake_gcloud, attempts):
    proc, calls = deploy([*BASE, "--max-delivery-attempts", attempts], tmp_path, fake_gcloud)
    assert "from 5 to 100" in one_line_error(proc)
    assert calls == []


def _worst_case_seconds(attempts: int, timeout: int = 540) -> int:
    """Every attempt runs the whole timeout, then waits Pub/Sub's backoff (10 s doubling, capped at 600 s)."""
    return attempts * timeout + sum(min(10 * 2 ** i, 600) for i in range(attempts - 1))


def test_default_attempts_end_within_eventarcs_retention(tmp_path, fake_gcloud):
    # Eventarc keeps an undelivered event 24 h and retries with a backoff from 10 s up to
    # 600 s (https://cloud.google.com/eventarc/docs/retry-events): the default attempts must
    # be used up, and the event dead-lettered, before Eventarc discards it.
    proc, calls = deploy([*BASE, "--only", "game_lines"], tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    (update,) = [c for c in calls if c[:3] == ["pubsub", "subscriptions", "update"] and "max-delivery-attempts" in flags(c)]
    (attempts,) = flags(update)["max-delivery-attempts"]
    assert _worst_case_seconds(int(attempts)) < 24 * 3600
    # negative control: Pub/Sub's maximum, 100, can outlast the retention (hence not the default)
    assert _worst_case_seconds(100) > 24 * 3600


# Forwarding needs the project's Pub/Sub service agent, service-{project_number}@gcp-sa-pubsub,
# to be subscriber on the source subscription (publisher on the topic is Terraform's,
# terraform/sweep.tf): https://cloud.google.com/pubsub/docs/dead-letter-topics,
# https://cloud.google.com/pubsub/docs/handling-failures
def test_the_pubsub_service_agent_is_made_subscriber_on_each_trigger_subscription(tmp_path, fake_gcloud):
    proc, calls = deploy(BASE, tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    grants = [c for c in calls if c[:3] == ["pubsub", "subscriptions", "add-iam-policy-binding"]]
    updates = [c for c in calls if c[:3] == ["pubsub", "subscriptions", "update"] and any(w.startswith("--dead-letter-topic=") for w in c)]
    assert [g[3] for g in grants] == [u[3] for u in updates]  # the subscription that got the policy
    assert len({g[3] for g in grants}) == 2                   # one per function
    for g in grants:
        assert flags(g)["role"] == ["roles/pubsub.subscriber"]
        assert flags(g)["member"] == [f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"]


def test_a_project_number_that_is_not_a_number_is_refused(tmp_path, fake_gcloud):
    # negative control: a project id where the number belongs would grant a non-existent agent
    proc, calls = deploy(BASE, tmp_path, fake_gcloud, extra_env={"GCLOUD_OUT_projects_describe": "my-proj"})
    assert proc.returncode == 1
    assert "not a project number" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not [c for c in calls if "add-iam-policy-binding" in c]


# Every Eventarc subscription deploy.sh touches acks within Pub/Sub's maximum, 600 s
# (ackDeadlineSeconds: "The maximum custom deadline you can specify is 600 seconds",
# https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions): Eventarc makes
# them with 10 s, and a push answered after the deadline is redelivered while it still runs.
def test_every_eventarc_subscription_gets_the_600_s_ack_deadline(tmp_path, fake_gcloud):
    proc, calls = deploy(BASE, tmp_path, fake_gcloud)
    assert proc.returncode == 0, proc.stderr
    updates = [c for c in calls if c[:3] == ["pubsub", "subscriptions", "update"]]
    storage = {c[3] for c in updates if "max-delivery-attempts" in flags(c)}
    sweep = {c[3] for c in updates if "max-delivery-attempts" not in flags(c)}
    assert len(storage) == 2 and len(sweep) == 2 and not storage & sweep  # both triggers of both functions
    assert all(flags(c)["ack-deadline"] == ["600"] for c in updates)


def test_the_sweep_trigger_delivers_the_sweep_topic_to_the_functions_service(tmp_path, fake_gcloud):
    topic = "projects/my-proj/topics/tf-sweep"
    outputs = {"FAKE_TF_OUTPUTS_JSON": terraform_outputs(sweep_topic=topic, region="europe-west1", bucket_location="EU")}
    proc, calls = deploy(BASE, tmp_path, fake_gcloud, extra_env=outputs)
    assert proc.returncode == 0, proc.stderr
    creates = [c for c in calls if c[:3] == ["eventarc", "triggers", "create"]]
    assert [c[3] for c in creates] == ["oddsbatch-sweep-game-lines", "oddsbatch-sweep-player-props"]
    for c, service in zip(creates, ("game-lines", "player-props")):
        f = flags(c)
        assert f["destination-run-service"] == [service] and f["destination-run-region"] == ["europe-west1"]
        assert f["location"] == ["europe-west1"] and f["transport-topic"] == [topic]
        assert f["event-filters"] == ["type=google.cloud.pubsub.topic.v1.messagePublished"]
        assert f["service-account"] == ["oddsbatch-trigger@my-proj.iam.gserviceaccount.com"]
    # each trigger is created after its function's deploy (Eventarc needs the Cloud Run service)
    order = [c[2] if c[:2] == ["functions", "deploy"] else c[3] for c in calls
             if c[:2] == ["functions", "deploy"] or c[:3] == ["eventarc", "triggers", "create"]]
    assert order == ["game_lines", "oddsbatch-sweep-game-lines", "player_props", "oddsbatch-sweep-player-props"]


def test_an_existing_sweep_trigger_is_kept(tmp_path, fake_gcloud):
    # `triggers list` prints the trigger's name: no create, the ack deadline is still set.
    proc, calls = deploy([*BASE, "--only", "game_lines"], tmp_path, fake_gcloud,
                         extra_env={"GCLOUD_OUT_eventarc_triggers_list": "projects/my-proj/locations/us-central1/triggers/x"})
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c[:3] == ["eventarc", "triggers", "create"]]
    assert calls[-1][:3] == ["pubsub", "subscriptions", "update"] and "--ack-deadline=600" in calls[-1]


@pytest.mark.parametrize("content, needle", [
    ("Warning: No outputs found", "is not the JSON of terraform output -json"),
    ('["a list"]', "is not the JSON of terraform output -json"),
    (None, "no such readable file"),
])
def test_an_outputs_file_that_is_not_terraforms_json_is_refused(tmp_path, fake_gcloud, content, needle):
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    proc, calls = deploy([*BASE, "--outputs-json", str(path)], tmp_path, fake_gcloud)
    assert needle in one_line_error(proc)
    assert calls == []


def test_an_outputs_file_gives_every_setting(tmp_path, fake_gcloud):
    path = tmp_path / "outputs.json"
    path.write_text(terraform_outputs(project_id="my-proj", bucket_name="my-landing", region="europe-west1",
                                      firestore_database="odds-db", quarantine_prefix="bad/"))
    proc, calls = deploy(["--outputs-json", str(path)], tmp_path, fake_gcloud)  # no --project, no --bucket
    assert proc.returncode == 0, proc.stderr
    (first, second) = deploys(calls)
    assert flags(first)["region"] == ["europe-west1"] and flags(first)["project"] == ["my-proj"]
    env = env_vars(first)
    assert (env["ODDSBATCH_FIRESTORE_DATABASE"], env["ODDSBATCH_QUARANTINE_PREFIX"], env["ODDSBATCH_BUCKET"]) == (
        "odds-db", "bad/", "my-landing")
