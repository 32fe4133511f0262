# The dataset, both target tables and the ingest log (schema, partitioning and clustering straight
# from shared/oddsbatch/schemas/); the table functions over them are in routines.tf.
# The functions also create short-lived staging tables in this dataset (they expire by
# themselves), which is why they get data editor on the dataset.

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

# The two MERGE targets (tables.json) and the append-only ingest log (ingest_log.json: one
# streamed row per batch round, read by the odds_api_ingest_status table function; never the
# target of DML, because rows streamed with tabledata.insertAll in the last 30 minutes cannot be
# modified by UPDATE, DELETE, MERGE or TRUNCATE:
# https://cloud.google.com/bigquery/docs/data-manipulation-language, Limitations). One resource
# for all three, so the routines' depends_on covers the log the status function reads.
# Partitioned by the DATE column with a required partition filter:
# https://cloud.google.com/bigquery/docs/creating-column-partitions
locals {
  ingest_log = jsondecode(file("${local.schema_dir}/ingest_log.json"))
  bigquery_tables = merge(
    { for id, t in local.tables : id => { description = t.description, schema_file = t.schema_file, clustering = t.clustering, require_partition_filter = t.require_partition_filter, partition_field = t.partition_field } },
    { for id, t in local.ingest_log : id => { description = t.description, schema_file = t.schema_file, clustering = t.clustering, require_partition_filter = t.require_partition_filter, partition_field = t.partition_field } },
  )
}

resource "google_bigquery_table" "tables" {
  #checkov:skip=CKV_GCP_80:Odds snapshots are public market data; Google-managed encryption is used (set bigquery.kms_key_name for CMEK).
  for_each                 = local.bigquery_tables
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
