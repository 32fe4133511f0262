# The dataset's table functions: one SQL file each under shared/oddsbatch/schemas/routines/,
# listed in routines.json with their arguments and the routines they read. The same files are
# what `oddsbatch up` creates locally (oddsbatch.routines), so the two cannot drift.
# Table functions: their date range is the base tables' required partition filter. The old
# pipeline's names are views (legacy.tf); their table functions here are the date-range form.
# https://cloud.google.com/bigquery/docs/table-functions
# https://cloud.google.com/bigquery/docs/reference/rest/v2/routines (definitionBody: the query inside AS (...))

locals {
  routine_dir = "${local.schema_dir}/routines"
  routines    = jsondecode(file("${local.routine_dir}/routines.json"))
  # The body with the datasets' names filled in, as oddsbatch.routines.Routine.body does
  # ($${...} is a literal $${ in HCL); the legacy table functions read the views of legacy.tf.
  routine_bodies = {
    for id in keys(local.routines) :
    id => replace(replace(replace(file("${local.routine_dir}/${id}.sql"), "$${project}", var.project_id), "$${dataset}", var.bigquery.dataset_id), "$${legacy_dataset}", var.legacy_dataset_id)
  }
  # BigQuery resolves a routine's body when it is created, so a routine that reads others is
  # created after them: stage 0 reads only tables, stage 1 reads stage 0 routines, stage 2
  # reads routines of stages 0 and 1 (odds_api_clv reads odds_api_closing_lines).
  # (No operators here: the offline load check, scripts/terraform/tfload.py, cannot read them in locals.)
  routines_stage0     = { for id, r in local.routines : id => r if alltrue([for d in lookup(r, "reads", []) : false]) }
  routines_with_reads = { for id, r in local.routines : id => r if anytrue([for d in lookup(r, "reads", []) : true]) }
  routines_stage1 = {
    for id, r in local.routines_with_reads : id => r if alltrue([for d in r.reads : contains(keys(local.routines_stage0), d)])
  }
  routines_after_stage1 = { for id in setsubtract(keys(local.routines_with_reads), keys(local.routines_stage1)) : id => local.routines[id] }
  routines_stage2 = {
    for id, r in local.routines_after_stage1 : id => r if alltrue([for d in r.reads : contains(concat(keys(local.routines_stage0), keys(local.routines_stage1)), d)])
  }
}

resource "google_bigquery_routine" "stage0" {
  for_each        = local.routines_stage0
  project         = var.project_id
  dataset_id      = google_bigquery_dataset.dataset.dataset_id
  routine_id      = each.key
  routine_type    = "TABLE_VALUED_FUNCTION"
  language        = "SQL"
  description     = each.value.description
  definition_body = local.routine_bodies[each.key]
  dynamic "arguments" {
    for_each = each.value.arguments
    content {
      name      = arguments.value.name
      data_type = jsonencode({ typeKind = arguments.value.type })
    }
  }
  depends_on = [google_bigquery_table.tables, google_bigquery_table.legacy_views, google_bigquery_table.legacy_views_reading_views]
}

resource "google_bigquery_routine" "stage1" {
  for_each        = local.routines_stage1
  project         = var.project_id
  dataset_id      = google_bigquery_dataset.dataset.dataset_id
  routine_id      = each.key
  routine_type    = "TABLE_VALUED_FUNCTION"
  language        = "SQL"
  description     = each.value.description
  definition_body = local.routine_bodies[each.key]
  dynamic "arguments" {
    for_each = each.value.arguments
    content {
      name      = arguments.value.name
      data_type = jsonencode({ typeKind = arguments.value.type })
    }
  }
  depends_on = [google_bigquery_table.tables, google_bigquery_table.legacy_views, google_bigquery_table.legacy_views_reading_views, google_bigquery_routine.stage0]
}

resource "google_bigquery_routine" "stage2" {
  for_each        = local.routines_stage2
  project         = var.project_id
  dataset_id      = google_bigquery_dataset.dataset.dataset_id
  routine_id      = each.key
  routine_type    = "TABLE_VALUED_FUNCTION"
  language        = "SQL"
  description     = each.value.description
  definition_body = local.routine_bodies[each.key]
  dynamic "arguments" {
    for_each = each.value.arguments
    content {
      name      = arguments.value.name
      data_type = jsonencode({ typeKind = arguments.value.type })
    }
  }
  # typeKind of every argument (DATE, INT64, STRING, NUMERIC, FLOAT64, TIMESTAMP here):
  # https://cloud.google.com/bigquery/docs/reference/rest/v2/StandardSqlDataType
  depends_on = [google_project_service.services["bigquery.googleapis.com"], google_bigquery_table.tables, google_bigquery_table.legacy_views, google_bigquery_table.legacy_views_reading_views, google_bigquery_routine.stage0, google_bigquery_routine.stage1]
}
