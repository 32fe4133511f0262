# Copyright 2026 oddsbatch authors. Bounded provider versions, as in cloud-foundation-fabric.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 8.0.0"
    }
  }
}
