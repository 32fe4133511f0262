# The Firestore database (Native mode) of the batch locks, pending markers and run records,
# and one TTL policy per collection on the field the protocol stamps on every document.
# TTL only garbage-collects: the functions read lease deadlines, they never wait for TTL.

resource "google_firestore_database" "database" {
  project                           = var.project_id
  name                              = var.firestore.database_id
  location_id                       = var.firestore.location_id
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.firestore.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.firestore.delete_protection ? "ABANDON" : "DELETE"
  depends_on                        = [google_project_service.services["firestore.googleapis.com"]]
}

resource "google_firestore_field" "ttl" {
  for_each   = toset(values(var.firestore.collections))
  project    = var.project_id
  database   = google_firestore_database.database.name
  collection = each.value
  field      = local.expire_at_field
  # An empty index_config drops the single-field indexes: expireAt is never queried, and a
  # monotonically increasing indexed timestamp would only add write hot spots.
  index_config {}
  ttl_config {}
  depends_on = [google_project_service.services["firestore.googleapis.com"]]
}
