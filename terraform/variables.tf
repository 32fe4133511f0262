# Variables in alphabetical order; related settings grouped in objects with defaults.

variable "alert_notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) every alert policy notifies."
  type        = list(string)
  default     = []
  nullable    = false
  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must look like projects/PROJECT/notificationChannels/ID."
  }
}

variable "alerts" {
  description = "Alert thresholds: an alert fires when the count in its window exceeds its threshold. The auth-error alert keeps the old runbook's > 10 in 5 minutes. failed_batches_threshold: terminal failures (0: each pages); transient_failures_threshold: transient ones, which retry by themselves. dead_letter_age_seconds: the dead-letter alert fires when a dead letter is older than this (one sweep period, 900 s with the default schedule). metric_wait_seconds: how long new log-based metrics settle before their alert policies are created (up to 10 minutes, provider issue 11102). oldest_pending_minutes: the oldest-pending alert fires when a sweep reports a pending file older than this."
  type = object({
    auth_errors_threshold        = optional(number, 10)
    auth_errors_window_seconds   = optional(number, 300)
    dead_letter_age_seconds      = optional(number, 900)
    failed_batches_threshold     = optional(number, 0)
    transient_failures_threshold = optional(number, 20)
    metric_wait_seconds          = optional(number, 600)
    oldest_pending_minutes       = optional(number, 30)
    quarantined_files_threshold  = optional(number, 0)
    stale_locks_threshold        = optional(number, 0)
    window_seconds               = optional(number, 300)
  })
  default  = {}
  nullable = false
  validation {
    condition = alltrue([
      for v in [var.alerts.auth_errors_threshold, var.alerts.failed_batches_threshold, var.alerts.quarantined_files_threshold, var.alerts.stale_locks_threshold, var.alerts.transient_failures_threshold] : v >= 0
    ])
    error_message = "Alert thresholds must be >= 0."
  }
  validation {
    condition = alltrue([
      for w in [var.alerts.auth_errors_window_seconds, var.alerts.window_seconds] : w >= 60 && w <= 86400 && floor(w) == w
    ])
    error_message = "Alert windows must be whole seconds between 60 and 86400."
  }
  validation {
    condition     = var.alerts.metric_wait_seconds >= 0 && var.alerts.metric_wait_seconds <= 3600 && floor(var.alerts.metric_wait_seconds) == var.alerts.metric_wait_seconds
    error_message = "alerts.metric_wait_seconds must be whole seconds between 0 and 3600."
  }
  validation {
    condition     = var.alerts.dead_letter_age_seconds >= 60
    error_message = "alerts.dead_letter_age_seconds must be at least 60 (one sweep period)."
  }
  validation {
    condition     = var.alerts.oldest_pending_minutes >= 1
    error_message = "alerts.oldest_pending_minutes must be at least 1."
  }
}

variable "bigquery" {
  description = "BigQuery dataset of the target tables, views and staging tables (ODDSBATCH_DATASET, ODDSBATCH_BIGQUERY_LOCATION)."
  type = object({
    dataset_id   = optional(string, "odds_api")
    kms_key_name = optional(string)
    location     = optional(string, "US")
  })
  default  = {}
  nullable = false
  validation {
    # RE2 allows repeat counts up to 1000 only ({1,1024} does not compile and can() turns that
    # into false for every value), so the length is checked apart. A dataset id: letters,
    # digits and underscores, at most 1,024 characters
    # (https://cloud.google.com/bigquery/docs/datasets#dataset-naming).
    condition     = length(var.bigquery.dataset_id) <= 1024 && can(regex("^[A-Za-z0-9_]+$", var.bigquery.dataset_id))
    error_message = "bigquery.dataset_id may hold only letters, digits and underscores (at most 1024)."
  }
  validation {
    condition     = var.bigquery.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", coalesce(var.bigquery.kms_key_name, "-")))
    error_message = "bigquery.kms_key_name must be a full Cloud KMS key name (projects/.../cryptoKeys/KEY) or null."
  }
  validation {
    condition     = length(var.bigquery.location) > 0
    error_message = "bigquery.location must not be empty."
  }
}

variable "bucket" {
  description = "Landing bucket (ODDSBATCH_BUCKET). Quarantined copies go under quarantine_prefix of this same bucket (ODDSBATCH_QUARANTINE_PREFIX). access_logs (off by default): Cloud Storage usage logs to NAME-access-logs, written by group:cloud-storage-analytics@google.com, which domain-restricted sharing refuses unless allowed (terraform/README.md, Access logs)."
  type = object({
    name                              = string
    access_logs                       = optional(bool, false)
    access_log_retention_days         = optional(number, 365)
    force_destroy                     = optional(bool, false)
    location                          = optional(string, "US")
    noncurrent_version_retention_days = optional(number, 30)
    quarantine_prefix                 = optional(string, "quarantine/")
    quarantine_retention_days         = optional(number, 90)
  })
  nullable = false
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]{1,49}[a-z0-9]$", var.bucket.name))
    error_message = "bucket.name must be 3-51 lowercase letters, digits, '-', '_' or '.' (the access-log bucket appends -access-logs)."
  }
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/$", var.bucket.quarantine_prefix)) && !startswith(var.bucket.quarantine_prefix, "odds-api")
    error_message = "bucket.quarantine_prefix must be one folder name ending in '/' and outside odds-api/ (the functions' input)."
  }
  validation {
    condition = alltrue([
      for d in [var.bucket.access_log_retention_days, var.bucket.noncurrent_version_retention_days, var.bucket.quarantine_retention_days] : d >= 1 && floor(d) == d
    ])
    error_message = "Retention periods are whole days, at least 1."
  }
}

variable "build_service_account_id" {
  description = "Account id of the service account Cloud Build runs the functions' builds as (deploy.sh --build-service-account)."
  type        = string
  default     = "oddsbatch-build"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.build_service_account_id))
    error_message = "build_service_account_id must be 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "dead_letters" {
  description = "Dead-letter topic of the object triggers (set on each trigger's Pub/Sub subscription after the deploy, README \"Dead letters\") and the pull subscription that keeps what lands there. retention_seconds: how long a dead letter is kept (default 7 days, the markers' TTL; Pub/Sub allows 10 minutes to 31 days). max_delivery_attempts: deliveries before a message is dead-lettered (5-100); 50 attempts of a 540 s function with backoff up to 600 s end within Eventarc's 24 h retention, after which a message would be discarded instead."
  type = object({
    max_delivery_attempts = optional(number, 50)
    retention_seconds     = optional(number, 604800)
    subscription_name     = optional(string, "oddsbatch-dead-letters")
    topic_name            = optional(string, "oddsbatch-dead-letters")
  })
  default  = {}
  nullable = false
  validation {
    condition     = var.dead_letters.max_delivery_attempts >= 5 && var.dead_letters.max_delivery_attempts <= 100 && floor(var.dead_letters.max_delivery_attempts) == var.dead_letters.max_delivery_attempts
    error_message = "dead_letters.max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's bounds)."
  }
  validation {
    condition     = var.dead_letters.retention_seconds >= 600 && var.dead_letters.retention_seconds <= 2678400 && floor(var.dead_letters.retention_seconds) == var.dead_letters.retention_seconds
    error_message = "dead_letters.retention_seconds must be whole seconds between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "enable_services" {
  description = "Enable the APIs the deployment needs (never disabled on destroy)."
  type        = bool
  default     = true
  nullable    = false
}

variable "firestore" {
  description = "Firestore (Native mode) database and the collections the lock protocol writes (ODDSBATCH_FIRESTORE_DATABASE, ODDSBATCH_*_COLLECTION); each gets a TTL policy on expireAt."
  type = object({
    collections = optional(object({
      fences  = optional(string, "oddsbatch_fences")
      ledger  = optional(string, "oddsbatch_merged")
      locks   = optional(string, "oddsbatch_locks")
      pending = optional(string, "oddsbatch_pending")
      runs    = optional(string, "oddsbatch_runs")
      sweeps  = optional(string, "oddsbatch_sweeps")
    }), {})
    database_id       = optional(string, "(default)")
    delete_protection = optional(bool, true)
    location_id       = optional(string, "nam5")
  })
  default  = {}
  nullable = false
  validation {
    condition     = var.firestore.database_id == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore.database_id))
    error_message = "firestore.database_id must be (default) or 4-63 lowercase letters, digits and '-', starting with a letter."
  }
  validation {
    condition     = length(distinct(values(var.firestore.collections))) == length(values(var.firestore.collections)) && alltrue([for c in values(var.firestore.collections) : can(regex("^[A-Za-z0-9_-]+$", c))])
    error_message = "firestore.collections must be distinct collection ids (letters, digits, '_' or '-')."
  }
}

variable "functions" {
  description = "The functions deploy.sh deploys: key = function name, account_id = its service account id (deploy.sh's --service-account-*), service_name = its Cloud Run service (gen2 turns '_' into '-')."
  type = map(object({
    account_id   = string
    service_name = string
  }))
  default = {
    game_lines = {
      account_id   = "oddsbatch-game-lines"
      service_name = "game-lines"
    }
    player_props = {
      account_id   = "oddsbatch-player-props"
      service_name = "player-props"
    }
  }
  nullable = false
  validation {
    condition     = length(var.functions) > 0 && alltrue([for f in values(var.functions) : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", f.account_id))])
    error_message = "Each functions[*].account_id must be 6-30 lowercase letters, digits or '-', starting with a letter."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : can(regex("^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$", f.service_name))])
    error_message = "Each functions[*].service_name must be a Cloud Run service name (lowercase letters, digits, '-')."
  }
}

variable "labels" {
  description = "Labels set on the buckets, dataset, tables and alert policies."
  type        = map(string)
  default     = {}
  nullable    = false
  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "Label keys and values must be lowercase letters, digits, '_' or '-' (keys start with a letter)."
  }
}

variable "legacy_dataset_id" {
  description = "Dataset of the compatibility views: the old pipeline's table names (nba_raw.odds_api_game_lines, ...) over the oddsbatch tables (oddsbatch up: ODDSBATCH_LEGACY_DATASET). Must differ from bigquery.dataset_id and from any dataset still holding the old tables."
  type        = string
  default     = "nba_raw"
  nullable    = false
  validation {
    # RE2 allows repeat counts up to 1000 only, so the length is its own check (see bigquery.dataset_id).
    condition     = length(var.legacy_dataset_id) <= 1024 && can(regex("^[A-Za-z0-9_]+$", var.legacy_dataset_id))
    error_message = "legacy_dataset_id may hold only letters, digits and underscores (at most 1024)."
  }
  validation {
    condition     = var.legacy_dataset_id != var.bigquery.dataset_id
    error_message = "legacy_dataset_id must differ from bigquery.dataset_id: its views take the old tables' names, odds_api_game_lines among them."
  }
}

variable "project_id" {
  description = "Project of every resource (ODDSBATCH_PROJECT)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id: 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "quarantine_role_id" {
  description = "Id of the project custom role that lets the functions write quarantined copies."
  type        = string
  default     = "oddsbatchQuarantineWriter"
  nullable    = false
  validation {
    condition     = can(regex("^[a-zA-Z0-9_.]{3,64}$", var.quarantine_role_id))
    error_message = "quarantine_role_id must be 3-64 letters, digits, '_' or '.'."
  }
}

variable "region" {
  description = "Region of the functions and of their Cloud Run services (deploy.sh --region)."
  type        = string
  default     = "us-central1"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as us-central1."
  }
}

variable "staging_object_age_days" {
  description = "Days after which the staging bucket's lifecycle rule deletes a staging object (NAME-staging, ODDSBATCH_STAGING_BUCKET). The functions delete each round's objects after its MERGE; this is the backstop for rounds that crashed or were abandoned. A retried round reuses its objects, so keep it above the longest time a key's work can wait (the sweep adopts stranded keys within ODDSBATCH_SWEEP_STALE_SECONDS)."
  type        = number
  default     = 1
  nullable    = false
  validation {
    condition     = var.staging_object_age_days >= 1 && floor(var.staging_object_age_days) == var.staging_object_age_days
    error_message = "staging_object_age_days must be a whole number of days, at least 1."
  }
}

variable "sweep" {
  description = "The scheduled sweep: Cloud Scheduler job (cron schedule, default every 15 minutes, in time_zone) publishing to topic_name, which an Eventarc trigger per function delivers."
  type = object({
    job_name   = optional(string, "oddsbatch-sweep")
    schedule   = optional(string, "*/15 * * * *")
    time_zone  = optional(string, "Etc/UTC")
    topic_name = optional(string, "oddsbatch-sweep")
  })
  default  = {}
  nullable = false
  validation {
    condition     = length(split(" ", trimspace(var.sweep.schedule))) == 5
    error_message = "sweep.schedule must be a five-field cron expression, e.g. */15 * * * *."
  }
}

variable "trigger_service_account_id" {
  description = "Account id of the Eventarc triggers' service account (deploy.sh --trigger-service-account)."
  type        = string
  default     = "oddsbatch-trigger"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.trigger_service_account_id))
    error_message = "trigger_service_account_id must be 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}
