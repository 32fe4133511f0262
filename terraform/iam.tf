# One service account per function with only what it uses, the Eventarc trigger's service
# account, and the Cloud Storage service agent's right to publish the finalize events.

resource "google_service_account" "functions" {
  for_each     = var.functions
  project      = var.project_id
  account_id   = each.value.account_id
  display_name = "oddsbatch ${each.key} function"
  description  = "Runs the ${each.key} Cloud Function: reads the landing bucket, writes quarantine, Firestore and BigQuery."
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = var.trigger_service_account_id
  display_name = "oddsbatch Eventarc trigger"
  description  = "Identity of the Eventarc storage triggers: receives events and invokes the functions."
}

# --- Cloud Storage ---------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "landing_reader" {
  for_each = var.functions
  bucket   = google_storage_bucket.landing.name
  role     = "roles/storage.objectViewer"
  member   = google_service_account.functions[each.key].member
}

# Quarantining copies an object under the prefix and patches the copy's metadata (the
# reason); a replay overwrites the same name. objectCreator lacks update and delete, so a
# custom role holds exactly create, update and delete, bound to the prefix only.
resource "google_project_iam_custom_role" "quarantine_writer" {
  project     = var.project_id
  role_id     = var.quarantine_role_id
  title       = "oddsbatch quarantine writer"
  description = "Create, overwrite and annotate quarantined copies (bound to the quarantine prefix)."
  permissions = [
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.update",
  ]
}

resource "google_storage_bucket_iam_member" "quarantine_writer" {
  for_each = var.functions
  bucket   = google_storage_bucket.landing.name
  role     = google_project_iam_custom_role.quarantine_writer.id
  member   = google_service_account.functions[each.key].member
  condition {
    title       = "quarantine-prefix-only"
    description = "Only objects under ${var.bucket.quarantine_prefix}"
    expression  = "resource.name.startsWith(\"${local.quarantine_object_prefix}\")"
  }
}

# --- BigQuery and Firestore ------------------------------------------------------------

resource "google_project_iam_member" "bigquery_job_user" {
  for_each = var.functions
  project  = var.project_id
  role     = "roles/bigquery.jobUser"
  member   = google_service_account.functions[each.key].member
}

resource "google_bigquery_dataset_iam_member" "data_editor" {
  for_each   = var.functions
  project    = var.project_id
  dataset_id = google_bigquery_dataset.dataset.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.functions[each.key].member
}

resource "google_project_iam_member" "datastore_user" {
  for_each = var.functions
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = google_service_account.functions[each.key].member
}

# --- Eventarc --------------------------------------------------------------------------

resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# The functions' Cloud Run services exist only once deploy.sh has run: bind the invoker
# role on them (and nothing else) on the apply after it (functions_deployed = true).
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  for_each = var.functions_deployed ? var.functions : {}
  project  = var.project_id
  location = var.region
  name     = each.value.service_name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# Gen2 Cloud Storage triggers: the bucket's service agent publishes to Eventarc's topic.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}
