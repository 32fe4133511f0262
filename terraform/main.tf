# Shared values. The table definitions and schemas are read from the Python package's own
# files (shared/oddsbatch/schemas/), never copied: Terraform and the functions cannot drift.

locals {
  schema_dir = "${path.module}/../shared/oddsbatch/schemas"
  # tables.json: table id -> schema_file, partition_field, clustering, natural_key, ...
  tables = jsondecode(file("${local.schema_dir}/tables.json"))
  # The TTL field every protocol document carries (oddsbatch.lock.EXPIRE_AT_FIELD).
  expire_at_field = "expireAt"
  # Quarantined copies: a prefix of the landing bucket (the functions' default,
  # ODDSBATCH_QUARANTINE_PREFIX); IAM conditions name objects under it.
  quarantine_object_prefix = "projects/_/buckets/${var.bucket.name}/objects/${var.bucket.quarantine_prefix}"
  # Cloud Logging filter of the functions' own logs (gen2 functions run as Cloud Run services).
  function_logs = join(" ", [
    "resource.type=\"cloud_run_revision\"",
    "AND resource.labels.service_name=(${join(" OR ", [for f in values(var.functions) : "\"${f.service_name}\""])})",
  ])
}
