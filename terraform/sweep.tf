# The sweep that runs by itself, and the dead letters of the object triggers.
#
# Cloud Scheduler publishes one message to the sweep topic every sweep.schedule; one Eventarc
# trigger per function delivers it to that function's Cloud Run service as a Pub/Sub
# message-published CloudEvent, and the handler sweeps its own endpoint (shared/oddsbatch/sweep.py).
# No third function: the sweep is the same package, the same lock and holder, the same
# service accounts and the same deployed code, so it can never drift from the batch it repairs.
#
# A gen2 function takes ONE trigger (its storage trigger, made by deploy.sh), so the sweep
# triggers are standalone Eventarc triggers targeting the functions' Cloud Run services. Those
# services exist only after deploy.sh ran: the triggers are created behind functions_deployed,
# like the invoker binding (iam.tf).

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

# A Pub/Sub-transport trigger to a Cloud Run service, type messagePublished, on an existing topic
# (transport.pubsub.topic: "You can set an existing topic for triggers of the type
# google.cloud.pubsub.topic.v1.messagePublished"):
# https://cloud.google.com/python/docs/reference/eventarc/latest/google.cloud.eventarc_v1.types.Pubsub
# and https://cloud.google.com/eventarc/docs/reference/rest/v1/projects.locations.triggers
resource "google_eventarc_trigger" "sweep" {
  for_each        = var.functions_deployed ? var.functions : {}
  project         = var.project_id
  location        = var.region
  name            = "oddsbatch-sweep-${each.value.service_name}"
  service_account = google_service_account.trigger.email
  labels          = var.labels
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
  transport {
    pubsub {
      topic = google_pubsub_topic.sweep.id
    }
  }
  depends_on = [
    google_project_service.services["eventarc.googleapis.com"],
    google_cloud_run_v2_service_iam_member.trigger_invoker,
  ]
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

data "google_project" "project" {
  project_id = var.project_id
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project    = var.project_id
  topic      = google_pubsub_topic.dead_letters.name
  role       = "roles/pubsub.publisher"
  member     = "serviceAccount:service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  depends_on = [google_project_service.services["pubsub.googleapis.com"]]
}
