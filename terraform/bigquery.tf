# The dataset, both target tables (schema, partitioning and clustering straight from
# shared/oddsbatch/schemas/) and one view per table holding the latest line per key.
# The functions also create short-lived staging tables in this dataset (they expire by
# themselves), which is why they get data editor on the dataset.

locals {
  # Latest line per key: the natural key minus the snapshot time, newest snapshot first
  # (ties broken by the newest object generation, as the MERGE does).
  latest_views = {
    for id, t in local.tables : "${id}_latest" => {
      table = id
      query = <<-SQL
        SELECT *
        FROM `${var.project_id}.${var.bigquery.dataset_id}.${id}`
        WHERE TRUE
        QUALIFY ROW_NUMBER() OVER (
          PARTITION BY ${join(", ", formatlist("`%s`", compact([for c in t.natural_key : contains(["snapshot_timestamp"], c) ? "" : c])))}
          ORDER BY `snapshot_timestamp` DESC, `source_generation` DESC, `source_object` DESC
        ) = 1
      SQL
    }
  }
}

resource "google_bigquery_dataset" "dataset" {
  #checkov:skip=CKV_GCP_81:Odds snapshots are public market data; Google-managed encryption is used (set bigquery.kms_key_name for CMEK).
  project                    = var.project_id
  dataset_id                 = var.bigquery.dataset_id
  location                   = var.bigquery.location
  description                = "The Odds API snapshots ingested by oddsbatch."
  delete_contents_on_destroy = false
  labels                     = var.labels
  dynamic "default_encryption_configuration" {
    for_each = compact([var.bigquery.kms_key_name])
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }
  depends_on = [google_project_service.services["bigquery.googleapis.com"]]
}

resource "google_bigquery_table" "tables" {
  #checkov:skip=CKV_GCP_80:Odds snapshots are public market data; Google-managed encryption is used (set bigquery.kms_key_name for CMEK).
  for_each                 = local.tables
  project                  = var.project_id
  dataset_id               = google_bigquery_dataset.dataset.dataset_id
  table_id                 = each.key
  description              = each.value.description
  schema                   = file("${local.schema_dir}/${each.value.schema_file}")
  clustering               = each.value.clustering
  require_partition_filter = each.value.require_partition_filter
  deletion_protection      = true
  labels                   = var.labels
  time_partitioning {
    type  = "DAY"
    field = each.value.partition_field
  }
  dynamic "encryption_configuration" {
    for_each = compact([var.bigquery.kms_key_name])
    content {
      kms_key_name = encryption_configuration.value
    }
  }
  depends_on = [google_project_service.services["bigquery.googleapis.com"]]
}

resource "google_bigquery_table" "latest" {
  #checkov:skip=CKV_GCP_80:A view stores no data of its own; encryption applies to the base tables.
  for_each            = local.latest_views
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.dataset.dataset_id
  table_id            = each.key
  description         = "Latest line per key of ${each.value.table} (query it with a filter on game_date)."
  deletion_protection = true
  labels              = var.labels
  view {
    query          = each.value.query
    use_legacy_sql = false
  }
  depends_on = [google_bigquery_table.tables]
}
