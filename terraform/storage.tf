# The landing bucket (the scraper writes, both functions read) and, when bucket.access_logs is
# on, its access-log bucket.
# Quarantined copies go under var.bucket.quarantine_prefix of the landing bucket (the
# functions' default), so one bucket holds both and a lifecycle rule ages them out.

resource "google_storage_bucket" "landing" {
  #checkov:skip=CKV_GCP_62:Usage logs are optional (bucket.access_logs, off by default): their writer group is outside the customer's domain and refused by domain-restricted sharing; Cloud Audit Logs record the API calls.
  name                        = var.bucket.name
  project                     = var.project_id
  location                    = var.bucket.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket.force_destroy
  labels                      = var.labels
  versioning {
    enabled = true
  }
  dynamic "logging" {
    for_each = google_storage_bucket.access_logs
    content {
      log_bucket        = logging.value.name
      log_object_prefix = var.bucket.name
    }
  }
  # Overwritten or deleted snapshots stay recoverable for a while, then go.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.bucket.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }
  # Quarantined copies are kept long enough to be looked at, then deleted.
  lifecycle_rule {
    condition {
      age            = var.bucket.quarantine_retention_days
      matches_prefix = [var.bucket.quarantine_prefix]
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

# Usage logs (https://cloud.google.com/storage/docs/access-logs) are written by the group
# cloud-storage-analytics@google.com, a member outside the customer's domain: an organization
# that enforces domain-restricted sharing (iam.allowedPolicyMemberDomains, on by default for
# organizations created on or after 2024-05-03, as measured in issue 18; Google's
# "secure by default" organization page was not in the offline documentation to cite) refuses
# the writer binding ("One or more users named in the policy do not belong to a permitted
# customer"), which fails the apply. Hence off by default; Cloud Audit Logs, which that page
# recommends in most cases, need no binding. To turn them on, allow the group first
# (terraform/README.md, Access logs).
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This bucket is the access-log sink itself; logging it into itself would log its own log writes.
  count                       = var.bucket.access_logs ? 1 : 0
  name                        = "${var.bucket.name}-access-logs"
  project                     = var.project_id
  location                    = var.bucket.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket.force_destroy
  labels                      = var.labels
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = var.bucket.access_log_retention_days
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

# Cloud Storage usage and storage logs are written by this Google group.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  count      = var.bucket.access_logs ? 1 : 0
  bucket     = google_storage_bucket.access_logs[0].name
  role       = "roles/storage.objectCreator"
  member     = "group:cloud-storage-analytics@google.com"
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}

# The functions' staging objects (ODDSBATCH_STAGING_BUCKET, shared/oddsbatch/staged_objects.py):
# each source object's staged rows, written once, loaded by BigQuery from gs://, deleted after the
# MERGE. A bucket of its own: Eventarc filters Cloud Storage events by bucket only, so an object
# written to the landing bucket would fire a finalize event to both functions. In the dataset's
# location: "If your dataset's location is set to a value other than the US multi-region, then the
# Cloud Storage bucket must be in the same region or contained in the same multi-region as the
# dataset" (https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-json). No versioning:
# the objects are disposable (a lost one is staged again from its source); the lifecycle rule
# deletes what a crashed round left behind.
resource "google_storage_bucket" "staging" {
  #checkov:skip=CKV_GCP_62:Disposable staging objects of the functions (deleted within var.staging_object_age_days); Cloud Audit Logs record the API calls.
  #checkov:skip=CKV_GCP_78:No versioning on purpose: staging objects are disposable, rewritten from their source when lost.
  name                        = "${var.bucket.name}-staging"
  project                     = var.project_id
  location                    = var.bigquery.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels
  lifecycle_rule {
    condition {
      age = var.staging_object_age_days
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.services["storage.googleapis.com"]]
}
