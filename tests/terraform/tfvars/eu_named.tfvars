# Everything away from the defaults that the functions must follow: an EU bucket and dataset,
# a named Firestore database with its own collections, a custom quarantine prefix, another
# region, and the APIs left to the project owner (enable_services = false).
project_id      = "odds-eu-project"
region          = "europe-west1"
enable_services = false
bucket = {
  name              = "odds-eu-landing"
  location          = "EU"
  quarantine_prefix = "bad-files/"
}
bigquery = {
  dataset_id = "odds_eu"
  location   = "EU"
}
firestore = {
  database_id = "odds-eu-db"
  location_id = "eur3"
  collections = {
    ledger  = "eu_merged"
    locks   = "eu_locks"
    pending = "eu_pending"
    runs    = "eu_runs"
    sweeps  = "eu_sweeps"
    fences  = "eu_fences"
  }
}
dead_letters = {
  topic_name        = "eu-dead-letters"
  subscription_name = "eu-dead-letters"
}
