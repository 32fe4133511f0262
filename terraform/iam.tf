# One service account per function with only what it uses, the Eventarc trigger's service
# account, the Cloud Build account that builds the functions, and the Cloud Storage service
# agent's right to publish the finalize events.

resource "google_service_account" "functions" {
  for_each     = var.functions
  project      = var.project_id
  account_id   = each.value.account_id
  display_name = "oddsbatch ${each.key} function"
  description  = "Runs the ${each.key} Cloud Function: reads the landing bucket, writes quarantine, staging objects, Firestore and BigQuery."
  depends_on   = [google_project_service.services["iam.googleapis.com"]]
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = var.trigger_service_account_id
  display_name = "oddsbatch Eventarc trigger"
  description  = "Identity of the Eventarc storage triggers: receives events and invokes the functions."
  depends_on   = [google_project_service.services["iam.googleapis.com"]]
}

# --- Cloud Storage ---------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "landing_reader" {
  for_each   = var.functions
  bucket     = google_storage_bucket.landing.name
  role       = "roles/storage.objectViewer"
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

# Quarantining copies an object under the prefix and patches the copy's metadata (the
# reason); a replay overwrites the same name. objectCreator lacks update and delete, so a
# custom role holds exactly create, update and delete, bound to the prefix only.
resource "google_project_iam_custom_role" "quarantine_writer" {
  project     = var.project_id
  role_id     = var.quarantine_role_id
  title       = "oddsbatch quarantine writer"
  description = "Create, overwrite and annotate quarantined copies (bound to the quarantine prefix) and the staging bucket's objects."
  permissions = [
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.update",
  ]
  depends_on = [google_project_service.services["iam.googleapis.com"]]
}

# The staging bucket: each function writes its staging objects, patches their metadata (the
# totals that complete a streamed one), reads them back (a retry's reuse check, and BigQuery's
# load job, which runs with the function's credentials and needs storage.objects.get) and deletes
# them. objectViewer (get, list) plus the custom writer role (create, update, delete), bucket-wide:
# the bucket holds nothing else. Roles and their permissions:
# https://cloud.google.com/storage/docs/access-control/iam-roles; what a load from Cloud Storage
# needs: https://cloud.google.com/bigquery/docs/batch-loading-data (Required permissions).
resource "google_storage_bucket_iam_member" "staging_reader" {
  for_each   = var.functions
  bucket     = google_storage_bucket.staging.name
  role       = "roles/storage.objectViewer"
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

resource "google_storage_bucket_iam_member" "staging_writer" {
  for_each   = var.functions
  bucket     = google_storage_bucket.staging.name
  role       = google_project_iam_custom_role.quarantine_writer.id
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["storage.googleapis.com"]]
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
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

# --- BigQuery and Firestore ------------------------------------------------------------

resource "google_project_iam_member" "bigquery_job_user" {
  for_each   = var.functions
  project    = var.project_id
  role       = "roles/bigquery.jobUser"
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

resource "google_bigquery_dataset_iam_member" "data_editor" {
  for_each   = var.functions
  project    = var.project_id
  dataset_id = google_bigquery_dataset.dataset.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["bigquery.googleapis.com"]]
}

resource "google_project_iam_member" "datastore_user" {
  for_each   = var.functions
  project    = var.project_id
  role       = "roles/datastore.user"
  member     = google_service_account.functions[each.key].member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

# --- Eventarc --------------------------------------------------------------------------

resource "google_project_iam_member" "trigger_event_receiver" {
  project    = var.project_id
  role       = "roles/eventarc.eventReceiver"
  member     = google_service_account.trigger.member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

# The triggers' account invokes the functions' Cloud Run services. Granted on the project, so it
# holds from the first apply, before deploy.sh creates the services and their triggers: no
# event can meet a 403, and no second apply is needed. The trigger identity needs Cloud Run
# Invoker to call an authenticated function (https://cloud.google.com/eventarc/standard/docs/functions/roles-permissions:
# the trigger service account gets the Cloud Run functions invocation permission); this
# account does nothing else, so the project scope adds no reach beyond the Cloud Run services.
resource "google_project_iam_member" "trigger_invoker" {
  project    = var.project_id
  role       = "roles/run.invoker"
  member     = google_service_account.trigger.member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

# Gen2 Cloud Storage triggers: the bucket's service agent publishes to Eventarc's topic.
data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project    = var.project_id
  role       = "roles/pubsub.publisher"
  member     = data.google_storage_project_service_account.gcs.member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}

# --- Cloud Build ------------------------------------------------------------------------

# Since mid-2024 a new project's builds run as the Compute Engine default account, which may
# lack what a function build needs, so deploy.sh passes this account instead
# (--build-service-account): https://cloud.google.com/functions/docs/securing/build-custom-sa
# and https://cloud.google.com/build/docs/cloud-build-service-account-updates
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = var.build_service_account_id
  display_name = "oddsbatch Cloud Build"
  description  = "Builds the oddsbatch functions: reads the uploaded source, pushes the image, writes build logs."
  depends_on   = [google_project_service.services["iam.googleapis.com"]]
}

# Exactly what a function build does, per the custom build account pages
# (https://cloud.google.com/functions/1stgendocs/securing/build-custom-sa,
# https://cloud.google.com/run/docs/configuring/services/build-service-account): write build
# logs (logging.logWriter), push the image to Artifact Registry's gcf-artifacts repository
# (artifactregistry.writer), read the uploaded source from the gcf-v2-sources bucket, which
# Cloud Functions creates itself on the first deploy, hence the project-level grant
# (storage.objectViewer).
resource "google_project_iam_member" "build" {
  for_each   = toset(["roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectViewer"])
  project    = var.project_id
  role       = each.value
  member     = google_service_account.build.member
  depends_on = [google_project_service.services["cloudresourcemanager.googleapis.com"]]
}
