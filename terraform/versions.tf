# Copyright 2026 oddsbatch authors. Bounded provider versions, as in cloud-foundation-fabric.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 8.0.0"
    }
    # google_project_service_identity exists only in the beta provider (sweep.tf).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50.0, < 8.0.0"
    }
    # time_sleep: the wait between the log-based metrics and their alert policies (monitoring.tf).
    time = {
      source  = "hashicorp/time"
      version = ">= 0.13.1, < 1.0.0"
    }
  }
}
