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
    failed_batches = {
      description = "Batches that failed (message \"failed\"): the event is retried by Eventarc, the markers stay queued."
      filter      = "${local.function_logs} AND jsonPayload.message=\"failed\" AND severity=ERROR"
      threshold   = var.alerts.failed_batches_threshold
      window      = var.alerts.window_seconds
      severity    = "ERROR"
      runbook     = "A batch failed: read jsonPayload.error of the \"failed\" lines; transient errors retry by themselves, persistent ones block that (endpoint, date) until fixed."
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
  triggers        = { for k, m in google_logging_metric.metrics : k => m.id }
  depends_on      = [google_logging_metric.metrics]
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
