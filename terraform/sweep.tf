# The sweep that runs by itself, and the dead letters of the object triggers.
#
# Cloud Scheduler publishes one message to the sweep topic every sweep.schedule; one Eventarc
# trigger per function delivers it to that function's Cloud Run service as a Pub/Sub
# message-published CloudEvent, and the handler sweeps its own endpoint (shared/oddsbatch/sweep.py).
# No third function: the sweep is the same package, the same lock and holder, the same
# service accounts and the same deployed code, so it can never drift from the batch it repairs.
#
# A gen2 function takes ONE trigger (its storage trigger), so the sweep triggers are standalone
# Eventarc triggers targeting the functions' Cloud Run services. Eventarc refuses a trigger
# whose Cloud Run destination does not exist yet, and those services exist only once
# deploy.sh deployed the functions: deploy.sh creates the sweep triggers right after each
# deploy (gcloud eventarc triggers create --transport-topic=<output sweep_topic>), as the
# trigger account, which holds run.invoker from the first apply (iam.tf).

# Scheduler job with a Pub/Sub target (topic_name = projects/P/topics/T, data base64):
# https://cloud.google.com/ruby/docs/reference/google-cloud-scheduler-v1/latest/Google-Cloud-Scheduler-V1-PubsubTarget
# and the gcloud equivalent: https://cloud.google.com/sdk/gcloud/reference/scheduler/jobs/create/pubsub
resource "google_pubsub_topic" "sweep" {
  #checkov:skip=CKV_GCP_83:The messages carry no data (the sweep's tick) or object names of public market data; Google-managed encryption is used.
  project    = var.project_id
  name       = var.sweep.topic_name
  labels     = var.labels
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}

resource "google_cloud_scheduler_job" "sweep" {
  project     = var.project_id
  region      = var.region
  name        = var.sweep.job_name
  description = "oddsbatch sweep: adopt stranded keys, merge lost events, report the oldest pending file."
  schedule    = var.sweep.schedule
  time_zone   = var.sweep.time_zone
  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode("sweep")
  }
  depends_on = [google_project_service.services["cloudscheduler.googleapis.com"]]
}

# --- dead letters of the object triggers ------------------------------------------------
# Eventarc retries through its Pub/Sub subscription (10 s doubling to 600 s) and keeps an event
# 24 h; "if an event message can't be successfully delivered within the message retention
# window, it's discarded unless a dead-letter topic is configured", and the dead-letter topic
# is set on the trigger's Pub/Sub subscription, not on the trigger:
# https://cloud.google.com/eventarc/docs/retry-events
# That subscription is created by Eventarc when deploy.sh deploys the function, so its
# dead-letter policy is set after the deploy (gcloud pubsub subscriptions update
# --dead-letter-topic, README "Dead letters"); Terraform makes
# the topic, a pull subscription that keeps what lands there (a topic without subscription
# loses its messages), and the Pub/Sub service agent's right to publish to the dead-letter
# topic; its right to subscribe (acknowledge the forwarded message) is granted on the source
# subscription alone, which exists only then:
# https://cloud.google.com/ruby/docs/reference/google-cloud-pubsub-v1/latest/Google-Cloud-PubSub-V1-DeadLetterPolicy
resource "google_pubsub_topic" "dead_letters" {
  #checkov:skip=CKV_GCP_83:The messages carry no data (the sweep's tick) or object names of public market data; Google-managed encryption is used.
  project    = var.project_id
  name       = var.dead_letters.topic_name
  labels     = var.labels
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}

resource "google_pubsub_subscription" "dead_letters" {
  project                    = var.project_id
  name                       = var.dead_letters.subscription_name
  topic                      = google_pubsub_topic.dead_letters.id
  message_retention_duration = "${var.dead_letters.retention_seconds}s"
  retain_acked_messages      = false
  ack_deadline_seconds       = 60
  labels                     = var.labels
  expiration_policy {
    ttl = ""
  }
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}

# The Pub/Sub service agent forwards dead letters. On a fresh project it may not exist yet
# when the publisher binding is made, and a binding to a missing account fails: create it
# first and take the member from it. google_project_service_identity is in the beta provider
# only (https://registry.terraform.io/providers/hashicorp/google-beta/latest/docs/resources/project_service_identity;
# gcloud beta services identity create: https://cloud.google.com/sdk/gcloud/reference/beta/services/identity/create).
resource "google_project_service_identity" "pubsub" {
  provider   = google-beta
  project    = var.project_id
  service    = "pubsub.googleapis.com"
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project    = var.project_id
  topic      = google_pubsub_topic.dead_letters.name
  role       = "roles/pubsub.publisher"
  member     = google_project_service_identity.pubsub.member
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}

# Each function's sweep drains the dead letters itself (pull, reconcile the dates they name, then
# acknowledge: shared/oddsbatch/sweep.py), so nothing waits for an operator: its account
# subscribes to the dead-letter subscription. roles/pubsub.subscriber grants pull, acknowledge
# and modifyAckDeadline (https://cloud.google.com/pubsub/docs/access-control).
resource "google_pubsub_subscription_iam_member" "dead_letter_drainer" {
  for_each     = var.functions
  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letters.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.functions[each.key].member
  depends_on   = [google_project_service.services["pubsub.googleapis.com"]]
}
