# Log-based metrics on the functions' structured log lines (stdout JSON, so the decision is
# jsonPayload.message) and one alert policy per metric, sent to var.alert_notification_channels.

locals {
  log_metrics = {
    auth_errors = {
      description = "401/403, PERMISSION_DENIED or UNAUTHENTICATED in the functions' logs (requests and errors)."
      filter = join(" ", [
        local.function_logs,
        "AND (httpRequest.status=401 OR httpRequest.status=403",
        "OR \"PERMISSION_DENIED\" OR \"UNAUTHENTICATED\"",
        "OR jsonPayload.error:\"403 \" OR jsonPayload.error:\"401 \")",
      ])
      threshold = var.alerts.auth_errors_threshold
      window    = var.alerts.auth_errors_window_seconds
      severity  = "ERROR"
      runbook   = "Authentication or permission errors: check the functions' service accounts, the trigger's run.invoker binding and any recent IAM change."
    }
    # The "failed" line carries transient = true|false (oddsbatch.holder): a transient failure
    # is retried by Eventarc and heals itself, so only terminal ones page at once; transient
    # ones page when they pile up (their own, higher threshold). Boolean fields compare with
    # true/false in the Logging query language
    # (https://cloud.google.com/logging/docs/view/logging-query-language).
    failed_batches = {
      description = "Batches that failed terminally (message \"failed\", transient=false): the same input fails again until fixed."
      filter      = "${local.function_logs} AND jsonPayload.message=\"failed\" AND jsonPayload.transient=false AND severity=ERROR"
      threshold   = var.alerts.failed_batches_threshold
      window      = var.alerts.window_seconds
      severity    = "ERROR"
      runbook     = "A batch failed terminally: read jsonPayload.error of the \"failed\" lines with transient=false; that (endpoint, date) stays blocked until the cause is fixed, then `oddsbatch reconcile` or the sweep merges it."
    }
    transient_failures = {
      description = "Batches that failed with a transient error (message \"failed\", transient=true): Eventarc retries them."
      filter      = "${local.function_logs} AND jsonPayload.message=\"failed\" AND jsonPayload.transient=true AND severity=ERROR"
      threshold   = var.alerts.transient_failures_threshold
      window      = var.alerts.window_seconds
      severity    = "WARNING"
      runbook     = "Many transient failures in one window: they retry by themselves, but this many means a quota, a rate limit or a backend outage; read jsonPayload.error."
    }
    stale_locks = {
      description = "Locks held past their lease and taken over (batch_started with how=stale_takeover): a holder died or overran."
      filter      = "${local.function_logs} AND jsonPayload.message=\"batch_started\" AND jsonPayload.how=\"stale_takeover\""
      threshold   = var.alerts.stale_locks_threshold
      window      = var.alerts.window_seconds
      severity    = "WARNING"
      runbook     = "A lock outlived its lease: look for crashed or timed-out invocations of that batch_key; the lease must exceed the function timeout."
    }
    quarantined_files = {
      description = "Files that could not be read as Odds API responses and were copied to quarantine (message \"quarantined\")."
      filter      = "${local.function_logs} AND jsonPayload.message=\"quarantined\""
      threshold   = var.alerts.quarantined_files_threshold
      window      = var.alerts.window_seconds
      severity    = "WARNING"
      runbook     = "Files were quarantined: read jsonPayload.reason and the copies under the quarantine prefix; fix the producer and re-upload."
    }
  }
}

resource "google_logging_metric" "metrics" {
  for_each    = local.log_metrics
  project     = var.project_id
  name        = "oddsbatch/${each.key}"
  description = each.value.description
  filter      = each.value.filter
  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "oddsbatch ${replace(each.key, "_", " ")}"
  }
  depends_on = [google_project_service.services["logging.googleapis.com"]]
}

# A log-based metric is not usable in an alert policy at once: creating the policy within
# minutes of the metric fails with 404 "Cannot find metric(s) that match type ... If a metric
# was created recently, it could take up to 10 minutes to become available", and the provider
# does not retry (https://github.com/hashicorp/terraform-provider-google/issues/11102). The
# policies wait for this sleep, which starts once every metric exists and runs again when a
# metric is replaced (time_sleep: https://registry.terraform.io/providers/hashicorp/time/latest/docs/resources/sleep).
resource "time_sleep" "metrics_propagation" {
  create_duration = "${var.alerts.metric_wait_seconds}s"
  triggers        = merge({ for k, m in google_logging_metric.metrics : k => m.id }, { oldest_pending = google_logging_metric.oldest_pending.id })
  depends_on      = [google_logging_metric.metrics, google_logging_metric.oldest_pending]
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each              = local.log_metrics
  project               = var.project_id
  display_name          = "oddsbatch: ${replace(each.key, "_", " ")}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = var.alert_notification_channels
  user_labels           = var.labels
  documentation {
    content   = each.value.runbook
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "${replace(each.key, "_", " ")} > ${each.value.threshold} in ${each.value.window}s"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.metrics[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${each.value.window}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }
  alert_strategy {
    auto_close = "1800s"
  }
  depends_on = [
    google_logging_metric.metrics,
    time_sleep.metrics_propagation,
    google_project_service.services["monitoring.googleapis.com"],
  ]
}

# --- the oldest pending file ------------------------------------------------------------
# Every sweep logs `sweep_pending` with oldest_pending_seconds (and the same age as
# oldest_pending_minutes) per endpoint, 0 when nothing is pending, before it adopts anything.
# A distribution metric extracts the minutes, so the threshold is the variable itself (no
# arithmetic in the configuration: see scripts/terraform/tfload.py)
# (value_extractor EXTRACT(jsonPayload.oldest_pending_minutes), bucket_options required for
# DISTRIBUTION: https://cloud.google.com/dotnet/docs/reference/Google.Cloud.Logging.V2/latest/Google.Cloud.Logging.V2.LogMetric),
# and the policy fires when its 99th percentile in the window passes alerts.oldest_pending_minutes
# (ALIGN_PERCENTILE_99 applies to DELTA distribution metrics:
# https://cloud.google.com/php/docs/reference/cloud-monitoring/latest/V3.Aggregation.Aligner).
# Ordered after its metric by the same time_sleep as the others.
resource "google_logging_metric" "oldest_pending" {
  project         = var.project_id
  name            = "oddsbatch/oldest_pending_minutes"
  description     = "Age in minutes of the oldest pending marker of an endpoint, as each sweep reports it (message \"sweep_pending\")."
  filter          = "${local.function_logs} AND jsonPayload.message=\"sweep_pending\""
  value_extractor = "EXTRACT(jsonPayload.oldest_pending_minutes)"
  label_extractors = {
    endpoint = "EXTRACT(jsonPayload.endpoint)"
  }
  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "min"
    display_name = "oddsbatch oldest pending minutes"
    labels {
      key         = "endpoint"
      value_type  = "STRING"
      description = "game-lines or player-props"
    }
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 0.25
    }
  }
  depends_on = [google_project_service.services["logging.googleapis.com"]]
}

resource "google_monitoring_alert_policy" "oldest_pending" {
  project               = var.project_id
  display_name          = "oddsbatch: oldest pending file"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = var.labels
  documentation {
    content   = "A file has waited longer than ${var.alerts.oldest_pending_minutes} minutes to be merged and the sweep could not merge it: read the sweep's lines (swept, sweep_key_failed, sweep_left_to_holder) and the \"failed\" lines of that batch_key, and `oddsbatch status`."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "oldest pending file > ${var.alerts.oldest_pending_minutes} min"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.oldest_pending.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alerts.oldest_pending_minutes
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.alerts.window_seconds}s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["metric.label.endpoint"]
      }
      trigger {
        count = 1
      }
    }
  }
  alert_strategy {
    auto_close = "1800s"
  }
  depends_on = [
    google_logging_metric.oldest_pending,
    time_sleep.metrics_propagation,
    google_project_service.services["monitoring.googleapis.com"],
  ]
}

# --- dead letters older than one sweep period -------------------------------------------
# An event dead-lettered after its attempts waits in the dead-letter subscription until the
# sweep drains it; one older than a sweep period means nothing drains it. Pub/Sub's built-in
# metric, no log-based metric (so no wait): subscription/oldest_unacked_message_age, in
# seconds, on resource pubsub_subscription with label subscription_id
# (https://cloud.google.com/monitoring/api/metrics_gcp_p_z, pubsub).
resource "google_monitoring_alert_policy" "dead_letter_age" {
  project               = var.project_id
  display_name          = "oddsbatch: dead letter older than a sweep period"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = var.labels
  documentation {
    content   = "A dead-lettered event has waited more than ${var.alerts.dead_letter_age_seconds} s in ${google_pubsub_subscription.dead_letters.name}: the sweep did not drain it. Read the sweep's lines, then `oddsbatch reconcile --from-dead-letters`."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "oldest dead letter > ${var.alerts.dead_letter_age_seconds}s"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letters.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alerts.dead_letter_age_seconds
      duration        = "0s"
      aggregations {
        alignment_period   = "${var.alerts.window_seconds}s"
        per_series_aligner = "ALIGN_MAX"
      }
      trigger {
        count = 1
      }
    }
  }
  alert_strategy {
    auto_close = "1800s"
  }
  depends_on = [google_project_service.services["monitoring.googleapis.com"]]
}
