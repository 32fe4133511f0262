"""The sweep's infrastructure, offline: scheduler, topic (its per-function Eventarc triggers are
deploy.sh's: tests/deploy), the dead-letter topic and subscription with the Pub/Sub service
agent made first, and the oldest-pending alert after its metric. Each rule is
checked by sweep_problems(), and each mutated configuration below must fail it."""

from __future__ import annotations

import shutil

from .conftest import TERRAFORM_DIR, TFVARS, hcl, one, raw_resource, resources, tfparse

PUBSUB_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"


def _text(value) -> str:
    """A literal of python-hcl2's raw view without its quotes."""
    return str(value or "").strip('"')


def sweep_problems(raw: dict, tf: dict) -> list[str]:
    problems = []
    job = resources(tf, "google_cloud_scheduler_job").get("google_cloud_scheduler_job.sweep")
    if job is None:
        return ["no google_cloud_scheduler_job.sweep"]
    if len(job["schedule"].split()) != 5:
        problems.append(f"scheduler schedule {job['schedule']!r} is not a cron expression")
    raw_job = raw_resource(raw, "google_cloud_scheduler_job", "sweep")
    target = (raw_job.get("pubsub_target") or [{}])[0]
    if target.get("topic_name") != "${google_pubsub_topic.sweep.id}":
        problems.append("the scheduler does not publish to google_pubsub_topic.sweep")
    if not target.get("data"):
        problems.append("the scheduler's message has no data (Pub/Sub needs data or an attribute)")
    # Eventarc refuses a trigger whose Cloud Run service does not exist yet: deploy.sh makes the
    # sweep triggers after each deploy, so the first apply needs none.
    if resources(tf, "google_eventarc_trigger"):
        problems.append("Terraform makes Eventarc triggers before deploy.sh made their Cloud Run services")
    dead = resources(tf, "google_pubsub_subscription").get("google_pubsub_subscription.dead_letters")
    if dead is None:
        problems.append("no subscription keeps the dead letters (messages to a topic without one are lost)")
    else:
        if raw_resource(raw, "google_pubsub_subscription", "dead_letters").get("topic") != (
                "${google_pubsub_topic.dead_letters.id}"):
            problems.append("the dead-letter subscription is not on the dead-letter topic")
        seconds = int(dead["message_retention_duration"].removesuffix("s"))
        if not 600 <= seconds <= 31 * 86400:
            problems.append(f"dead letters kept {seconds}s, outside Pub/Sub's 10 minutes..31 days")
    publisher = raw_resource(raw, "google_pubsub_topic_iam_member", "dead_letter_publisher")
    if _text(publisher.get("role")) != "roles/pubsub.publisher" or _text(
            publisher.get("member")) != "${google_project_service_identity.pubsub.member}":
        problems.append("the Pub/Sub service agent (made first, google_project_service_identity) may not publish to the dead-letter topic")
    identity = one(tf, "google_project_service_identity.pubsub")
    if identity.get("service") != "pubsub.googleapis.com":
        problems.append("the service identity made first is not Pub/Sub's")
    metric = raw_resource(raw, "google_logging_metric", "oldest_pending")
    if "EXTRACT(jsonPayload.oldest_pending_minutes)" not in metric.get("value_extractor", ""):
        problems.append("the oldest-pending metric does not extract jsonPayload.oldest_pending_minutes")
    if 'jsonPayload.message=\\"sweep_pending\\"' not in metric.get("filter", "") and (
            'jsonPayload.message="sweep_pending"' not in metric.get("filter", "")):
        problems.append("the oldest-pending metric does not read the sweep_pending lines")
    alert = raw_resource(raw, "google_monitoring_alert_policy", "oldest_pending")
    for dep in ("${google_logging_metric.oldest_pending}", "${time_sleep.metrics_propagation}"):
        if dep not in alert.get("depends_on", []):
            problems.append(f"the oldest-pending alert does not depend on {dep[2:-1]}")
    sleep = one(tf, "time_sleep.metrics_propagation")
    if "oldest_pending" not in sleep.get("triggers", {}):
        problems.append("the metric wait does not start again when the oldest-pending metric is replaced")
    policy = one(tf, "google_monitoring_alert_policy.oldest_pending")
    cond = policy["conditions"]["condition_threshold"]
    if cond["comparison"] != "COMPARISON_GT" or cond["aggregations"]["per_series_aligner"] != "ALIGN_PERCENTILE_99":
        problems.append("the oldest-pending alert does not fire on the distribution's high percentile")
    return problems


def test_sweep_scheduler_topic_triggers_dead_letters_and_alert(tf, raw):
    assert sweep_problems(raw, tf) == []
    job = one(tf, "google_cloud_scheduler_job.sweep")
    assert (job["schedule"], job["time_zone"], job["region"]) == ("*/15 * * * *", "Etc/UTC", "us-central1")
    assert one(tf, "google_pubsub_topic.sweep")["name"] == "oddsbatch-sweep"
    assert one(tf, "google_pubsub_topic.dead_letters")["name"] == "oddsbatch-dead-letters"
    dead = one(tf, "google_pubsub_subscription.dead_letters")
    assert dead["message_retention_duration"] == "604800s" and dead["expiration_policy"]["ttl"] == ""
    policy = one(tf, "google_monitoring_alert_policy.oldest_pending")
    assert policy["conditions"]["condition_threshold"]["threshold_value"] == 30
    assert policy["notification_channels"] == ["projects/oddsbatch-test/notificationChannels/123"]
    metric = one(tf, "google_logging_metric.oldest_pending")
    assert (metric["metric_descriptor"]["metric_kind"], metric["metric_descriptor"]["value_type"]) == (
        "DELTA", "DISTRIBUTION")
    outputs = {o["__tfmeta"]["label"] for o in tf["output"]}
    assert {"dead_letter_topic", "dead_letters_subscription", "sweep_topic"} <= outputs


def test_variables_reach_the_resources(tmp_path):
    tfvars = tmp_path / "custom.tfvars"
    tfvars.write_text(TFVARS.read_text() + 'sweep = { schedule = "*/5 * * * *" }\n'
                      'alerts = { oldest_pending_minutes = 45 }\ndead_letters = { retention_seconds = 86400 }\n')
    tf = tfparse(TERRAFORM_DIR, tfvars)
    assert one(tf, "google_cloud_scheduler_job.sweep")["schedule"] == "*/5 * * * *"
    assert one(tf, "google_monitoring_alert_policy.oldest_pending")["conditions"]["condition_threshold"][
        "threshold_value"] == 45
    assert one(tf, "google_pubsub_subscription.dead_letters")["message_retention_duration"] == "86400s"


def _mutated(tmp_path, filename: str, old: str, new: str):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    path = copy / filename
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return sweep_problems(hcl(copy), tfparse(copy, TFVARS))


def test_a_sweep_trigger_in_terraform_fails(tmp_path):
    # Negative control: the old google_eventarc_trigger.sweep, which needs the Cloud Run service.
    trigger = """
resource "google_eventarc_trigger" "sweep" {
  for_each        = var.functions
  project         = var.project_id
  location        = var.region
  name            = "oddsbatch-sweep-${each.value.service_name}"
  service_account = google_service_account.trigger.email
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }
  destination {
    cloud_run_service {
      service = each.value.service_name
      region  = var.region
    }
  }
  depends_on = [google_project_service.services["eventarc.googleapis.com"]]
}
"""
    problems = _mutated(tmp_path, "sweep.tf", "# --- dead letters of the object triggers", trigger + "\n# --- dead letters of the object triggers")
    assert "Terraform makes Eventarc triggers before deploy.sh made their Cloud Run services" in problems, problems


def test_a_publisher_binding_to_a_computed_agent_name_fails(tmp_path):
    # Negative control: the agent's name computed from the project number, which may not exist yet.
    problems = _mutated(tmp_path, "sweep.tf", "member     = google_project_service_identity.pubsub.member",
                        'member     = "serviceAccount:service-1@gcp-sa-pubsub.iam.gserviceaccount.com"')
    assert any("made first" in p for p in problems), problems


def test_dead_letters_without_their_subscription_fail(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy)
    text = (copy / "sweep.tf").read_text()
    start = text.index('resource "google_pubsub_subscription" "dead_letters"')
    end = text.index("# The Pub/Sub service agent forwards dead letters.")
    (copy / "sweep.tf").write_text(text[:start] + text[end:])
    problems = sweep_problems(hcl(copy), tfparse(copy, TFVARS))
    assert any("no subscription keeps the dead letters" in p for p in problems), problems


def test_the_alert_before_its_metric_fails(tmp_path):
    problems = _mutated(tmp_path, "monitoring.tf", "    google_logging_metric.oldest_pending,\n    time_sleep", "    time_sleep")
    assert "the oldest-pending alert does not depend on google_logging_metric.oldest_pending" in problems, problems


def test_a_scheduler_publishing_elsewhere_fails(tmp_path):
    problems = _mutated(tmp_path, "sweep.tf", "    topic_name = google_pubsub_topic.sweep.id",
                        "    topic_name = google_pubsub_topic.dead_letters.id")
    assert "the scheduler does not publish to google_pubsub_topic.sweep" in problems, problems
