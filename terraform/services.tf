# APIs the deployment needs. Never disabled on destroy: other workloads may use them.
# An API must be enabled before it is used (https://cloud.google.com/service-usage/docs/overview),
# so every resource names the API it calls in depends_on (google_project_service.services["API"]):
# a fresh project's first apply otherwise races the enablement and fails with 403 "API has
# not been used in project ... or it is disabled" (the provider does not wait by itself;
# the pattern: https://github.com/GoogleCloudPlatform/terraform-dynamic-python-webapp/issues/67).
# Project IAM bindings are Resource Manager API calls (setIamPolicy):
# https://cloud.google.com/iam/docs/write-policy-client-libraries

locals {
  services = [
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "services" {
  for_each                   = var.enable_services ? toset(local.services) : toset([])
  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}
