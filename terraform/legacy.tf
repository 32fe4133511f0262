# The compatibility dataset: the old pipeline's dataset name (var.legacy_dataset_id, nba_raw by
# default) holding views with the old tables' names and columns over our tables, so queries written
# for the old tables (najicham/nba-stats-scraper) run unchanged. One SQL file each under
# shared/oddsbatch/schemas/legacy_views/ (views.json: description, and the views each reads), the
# same files `oddsbatch up` creates locally (oddsbatch.routines.create_legacy_views); the legacy
# table functions of routines.tf select from these views.
# A logical view: google_bigquery_table with a view block (query, use_legacy_sql = false):
# https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/bigquery_table
# BigQuery applies a base table's require_partition_filter when the view is queried ("The query that
# defines a view is run each time the view is queried"): https://cloud.google.com/bigquery/docs/views-intro
# A view and the tables it reads must be in the same location (views-intro, limitations).

locals {
  legacy_view_dir = "${local.schema_dir}/legacy_views"
  legacy_views    = jsondecode(file("${local.legacy_view_dir}/views.json"))
  # The query with the datasets' names filled in, as oddsbatch.routines.LegacyView.query does.
  legacy_view_queries = {
    for id in keys(local.legacy_views) :
    id => replace(replace(replace(file("${local.legacy_view_dir}/${id}.sql"), "$${project}", var.project_id), "$${dataset}", var.bigquery.dataset_id), "$${legacy_dataset}", var.legacy_dataset_id)
  }
  # BigQuery resolves a view's query when it is created: the views that read other views
  # (odds_api_game_lines_preferred) are created after them (one level, checked by oddsbatch.routines).
  legacy_views_stage0 = { for id, v in local.legacy_views : id => v if alltrue([for d in lookup(v, "reads", []) : false]) }
  legacy_views_stage1 = { for id, v in local.legacy_views : id => v if anytrue([for d in lookup(v, "reads", []) : true]) }
}

resource "google_bigquery_dataset" "legacy" {
  #checkov:skip=CKV_GCP_81:It holds views only (no data of its own); the tables they read are in the main dataset.
  project                    = var.project_id
  dataset_id                 = var.legacy_dataset_id
  location                   = var.bigquery.location
  description                = "The old pipeline's table names (nba-stats-scraper) as views over the oddsbatch tables."
  delete_contents_on_destroy = false
  labels                     = var.labels
  depends_on                 = [google_project_service.services["bigquery.googleapis.com"]]
}

resource "google_bigquery_table" "legacy_views" {
  #checkov:skip=CKV_GCP_80:A logical view stores no data to encrypt; the tables it reads carry the dataset's encryption.
  for_each            = local.legacy_views_stage0
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.legacy.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = true
  labels              = var.labels
  view {
    query          = local.legacy_view_queries[each.key]
    use_legacy_sql = false
  }
  depends_on = [google_project_service.services["bigquery.googleapis.com"], google_bigquery_table.tables]
}

resource "google_bigquery_table" "legacy_views_reading_views" {
  #checkov:skip=CKV_GCP_80:A logical view stores no data to encrypt; the tables it reads carry the dataset's encryption.
  for_each            = local.legacy_views_stage1
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.legacy.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = true
  labels              = var.labels
  view {
    query          = local.legacy_view_queries[each.key]
    use_legacy_sql = false
  }
  depends_on = [google_project_service.services["bigquery.googleapis.com"], google_bigquery_table.legacy_views]
}
