# What deploy.sh needs, in alphabetical order.

output "bigquery_location" {
  description = "Location of the dataset (ODDSBATCH_BIGQUERY_LOCATION)."
  value       = google_bigquery_dataset.dataset.location
}

output "bucket_location" {
  description = "Location of the landing bucket (deploy.sh --bucket-location: its Eventarc trigger location)."
  value       = google_storage_bucket.landing.location
}

output "bucket_name" {
  description = "Landing bucket (deploy.sh --bucket, ODDSBATCH_BUCKET)."
  value       = google_storage_bucket.landing.name
}

output "build_service_account" {
  description = "Email of the account Cloud Build runs the function builds as (deploy.sh --build-service-account)."
  value       = google_service_account.build.email
}

output "dataset_id" {
  description = "BigQuery dataset (deploy.sh --dataset, ODDSBATCH_DATASET)."
  value       = google_bigquery_dataset.dataset.dataset_id
}

output "dead_letter_topic" {
  description = "Dead-letter topic of the object triggers (deploy.sh --dead-letter-topic)."
  value       = google_pubsub_topic.dead_letters.id
}

output "dead_letters_subscription" {
  description = "Pull subscription that keeps the dead letters (oddsbatch reconcile --from-dead-letters)."
  value       = google_pubsub_subscription.dead_letters.id
}

output "firestore_collections" {
  description = "Collections with a TTL policy on expireAt (ODDSBATCH_LOCK_/PENDING_/RUNS_/LEDGER_COLLECTION)."
  value       = var.firestore.collections
}

output "firestore_database" {
  description = "Firestore database id (ODDSBATCH_FIRESTORE_DATABASE)."
  value       = google_firestore_database.database.name
}

output "project_id" {
  description = "Project of every resource (deploy.sh --project)."
  value       = var.project_id
}

output "quarantine_bucket" {
  description = "Bucket of the quarantined copies: the landing bucket itself (ODDSBATCH_QUARANTINE_BUCKET)."
  value       = google_storage_bucket.landing.name
}

output "quarantine_prefix" {
  description = "Object prefix of quarantined copies in the landing bucket (ODDSBATCH_QUARANTINE_PREFIX)."
  value       = var.bucket.quarantine_prefix
}

output "region" {
  description = "Region of the functions (deploy.sh --region)."
  value       = var.region
}

output "service_accounts" {
  description = "Function name -> service account email (deploy.sh --service-account-game-lines / --service-account-player-props)."
  value       = { for k, sa in google_service_account.functions : k => sa.email }
}

output "staging_bucket" {
  description = "Bucket of the functions' staging objects (ODDSBATCH_STAGING_BUCKET): staged rows loaded by BigQuery from gs://."
  value       = google_storage_bucket.staging.name
}

output "sweep_topic" {
  description = "Topic the sweep's Cloud Scheduler job publishes to (one Eventarc trigger per function delivers it)."
  value       = google_pubsub_topic.sweep.id
}

output "tables" {
  description = "Target tables and the table functions over them, as dataset.name."
  value = merge(
    { for k, t in google_bigquery_table.tables : k => "${t.dataset_id}.${t.table_id}" },
    { for k, r in merge(google_bigquery_routine.stage0, google_bigquery_routine.stage1, google_bigquery_routine.stage2) : k => "${r.dataset_id}.${r.routine_id}" },
  )
}

output "trigger_service_account" {
  description = "Email of the Eventarc triggers' service account (gcloud functions deploy --trigger-service-account)."
  value       = google_service_account.trigger.email
}
