"""Assertions on the evaluated configuration (tfparse, with tests/terraform/test.tfvars).

Values the Python code owns (TTL field, collections, schemas, partitioning) are compared with
the Python package itself, so Terraform and the functions cannot drift.
"""

from __future__ import annotations

import json
from importlib import resources as pkg_resources

import pytest

from oddsbatch import documents
from oddsbatch.config import Settings
from oddsbatch.routines import all_routines

from .conftest import TERRAFORM_DIR, TFVARS, one, raw_resource, resources, tfparse

SCHEMAS = pkg_resources.files("oddsbatch") / "schemas"
TABLES = json.loads((SCHEMAS / "tables.json").read_text())
DEFAULTS = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p"})
FUNCTIONS = ("game_lines", "player_props")


def test_landing_bucket_is_locked_down(tf):
    bucket = one(tf, "google_storage_bucket.landing")
    assert bucket["name"] == "oddsbatch-test-landing"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"]["enabled"] is True
    assert bucket["force_destroy"] is False
    # Access logs are off by default (their writer is outside the domain: storage.tf).
    assert not bucket.get("logging")
    rules = bucket["lifecycle_rule"]
    assert {"days_since_noncurrent_time": 30} in [_plain(r["condition"]) for r in rules]
    assert {"age": 90, "matches_prefix": [DEFAULTS.quarantine_prefix]} in [_plain(r["condition"]) for r in rules]
    assert all(r["action"]["type"] == "Delete" for r in rules)


def test_staging_bucket_is_locked_down_in_the_datasets_location_and_ages_its_objects_out(tf):
    bucket = one(tf, "google_storage_bucket.staging")
    assert bucket["name"] == "oddsbatch-test-landing-staging"
    assert bucket["location"] == one(tf, "google_bigquery_dataset.dataset")["location"]  # BigQuery loads need it
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert not bucket.get("versioning") or bucket["versioning"].get("enabled") is not True
    rule = bucket["lifecycle_rule"]  # one block: tfparse gives it as an object
    (rule,) = rule if isinstance(rule, list) else [rule]
    assert _plain(rule["condition"]) == {"age": 1} and rule["action"]["type"] == "Delete"


def test_access_logs_are_off_by_default(tf):
    assert sorted(resources(tf, "google_storage_bucket")) == ["google_storage_bucket.landing",
                                                               "google_storage_bucket.staging"]
    assert not [a for a in resources(tf, "google_storage_bucket_iam_member") if "access_logs" in a]


def test_access_log_bucket_is_locked_down(tmp_path, raw):
    tfvars = tmp_path / "logs.tfvars"
    tfvars.write_text(TFVARS.read_text().replace('  name = "oddsbatch-test-landing"\n', '  name = "oddsbatch-test-landing"\n  access_logs = true\n'))
    tf = tfparse(TERRAFORM_DIR, tfvars)
    # The landing bucket logs into it (a dynamic block over the optional bucket; its values are
    # applied by real Terraform in test_real_terraform.py, set access_logs_on).
    (logging,) = [d['"logging"'] for d in raw_resource(raw, "google_storage_bucket", "landing")["dynamic"] if '"logging"' in d]
    assert logging["for_each"] == "${google_storage_bucket.access_logs}"
    logs = [b for b in resources(tf, "google_storage_bucket").values() if b["name"].endswith("-access-logs")]
    assert len(logs) == 1
    logs = logs[0]
    assert logs["uniform_bucket_level_access"] is True
    assert logs["public_access_prevention"] == "enforced"
    assert logs["versioning"]["enabled"] is True


def test_firestore_is_native_with_ttl_on_every_protocol_collection(tf):
    db = one(tf, "google_firestore_database.database")
    assert db["type"] == "FIRESTORE_NATIVE"
    assert db["name"] == DEFAULTS.firestore_database
    assert db["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    fields = resources(tf, "google_firestore_field").values()
    assert sorted(f["collection"] for f in fields) == sorted(DEFAULTS.collections)
    for f in fields:
        assert f["field"] == documents.EXPIRE_AT_FIELD
        assert "ttl_config" in f


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_tables_match_the_python_schema_files(tf, table_id):
    spec = TABLES[table_id]
    table = one(tf, f'google_bigquery_table.tables["{table_id}"]')
    schema = json.loads(table["schema"])
    assert schema == json.loads((SCHEMAS / spec["schema_file"]).read_text())
    columns = {c["name"]: c for c in schema}
    assert table["time_partitioning"]["field"] == spec["partition_field"]
    assert table["time_partitioning"]["type"] == "DAY"
    assert columns[spec["partition_field"]]["type"] == "DATE"
    assert table["require_partition_filter"] is True is spec["require_partition_filter"]
    assert table["clustering"] == spec["clustering"]
    assert set(spec["clustering"]) <= set(columns)
    assert set(spec["natural_key"]) <= set(columns)
    assert table["deletion_protection"] is True
    assert table["dataset_id"] == DEFAULTS.dataset


ROUTINES = json.loads((SCHEMAS / "routines" / "routines.json").read_text())


def _routine(tf, routine_id):
    found = [r for r in resources(tf, "google_bigquery_routine").values() if r["routine_id"] == routine_id]
    assert len(found) == 1, routine_id
    return found[0]


def _routine_stages(tf) -> list[set[str]]:
    """Routine ids per Terraform stage resource (stage0, stage1, ...), in creation order."""
    routines = resources(tf, "google_bigquery_routine").items()
    stages = sorted({addr.split(".")[1].split("[")[0] for addr, _ in routines})
    assert stages == [f"stage{i}" for i in range(len(stages))], stages
    return [{r["routine_id"] for addr, r in routines if f".{stage}[" in addr} for stage in stages]


def _created_after_what_they_read(stages: list[set[str]], routines: dict) -> list[str]:
    """Routines that read one not created in an earlier stage (BigQuery resolves a body at creation)."""
    earlier, wrong = set(), []
    for stage in stages:
        wrong += sorted(r for r in stage if not set(routines[r].get("reads", [])) <= earlier)
        earlier |= stage
    return wrong


def test_every_routine_is_created_once_after_what_it_reads(tf):
    stages = _routine_stages(tf)
    assert set().union(*stages) == set(ROUTINES) and sum(map(len, stages)) == len(ROUTINES)
    assert len(stages) == 3  # odds_api_clv reads odds_api_closing_lines, which reads odds_api_lines
    assert _created_after_what_they_read(stages, ROUTINES) == []
    # negative control: the same stages, had clv been created with what it reads
    flat = [stages[0], stages[1] | stages[2]]
    assert _created_after_what_they_read(flat, ROUTINES) == ["odds_api_clv"]


@pytest.mark.parametrize("routine_id", sorted(ROUTINES))
def test_routines_are_table_functions_of_the_shared_sql_files(tf, routine_id):
    routine = _routine(tf, routine_id)
    assert routine["routine_type"] == "TABLE_VALUED_FUNCTION" and routine["language"] == "SQL"
    python = next(r for r in all_routines() if r.name == routine_id)
    # the text Terraform sends is the text oddsbatch up runs, for the same project and dataset
    assert routine["definition_body"] == python.body("oddsbatch-test", DEFAULTS.dataset)
    assert [(a["name"], json.loads(a["data_type"])["typeKind"]) for a in routine["arguments"]] == list(python.arguments)


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_latest_functions_partition_by_the_natural_key_minus_snapshot_time(tf, table_id):
    body = _routine(tf, f"{table_id}_latest")["definition_body"]
    key = [c for c in TABLES[table_id]["natural_key"] if c != "snapshot_timestamp"]
    assert key[0] == "game_date"  # the partition column leads the window
    assert f"PARTITION BY {', '.join(key)}\n" in body
    assert "ORDER BY snapshot_timestamp DESC, source_generation DESC, source_object DESC" in body
    assert f"`oddsbatch-test.{DEFAULTS.dataset}.{table_id}`" in body
    assert "WHERE game_date BETWEEN start_date AND end_date" in body


def test_dataset(tf):
    ds = one(tf, "google_bigquery_dataset.dataset")
    assert ds["dataset_id"] == DEFAULTS.dataset
    assert ds["location"] == DEFAULTS.bigquery_location
    assert ds["delete_contents_on_destroy"] is False


def _roles_of(tf, tf_type):
    return [(addr, r) for addr, r in resources(tf, tf_type).items()]


def test_function_service_accounts_get_only_what_they_use(tf, raw):
    accounts = resources(tf, "google_service_account")
    for fn in FUNCTIONS:
        assert f'google_service_account.functions["{fn}"]' in accounts
    assert one(tf, 'google_service_account.functions["game_lines"]')["account_id"] == "oddsbatch-game-lines"
    assert one(tf, 'google_service_account.functions["player_props"]')["account_id"] == "oddsbatch-player-props"
    # Bucket: object read on the landing bucket, quarantine writes on the prefix only.
    for fn in FUNCTIONS:
        reader = one(tf, f'google_storage_bucket_iam_member.landing_reader["{fn}"]')
        assert (reader["bucket"], reader["role"]) == ("oddsbatch-test-landing", "roles/storage.objectViewer")
        writer = one(tf, f'google_storage_bucket_iam_member.quarantine_writer["{fn}"]')
        assert writer["condition"]["expression"] == (
            'resource.name.startsWith("projects/_/buckets/oddsbatch-test-landing/objects/quarantine/")')
        assert one(tf, f'google_project_iam_member.bigquery_job_user["{fn}"]')["role"] == "roles/bigquery.jobUser"
        editor = one(tf, f'google_bigquery_dataset_iam_member.data_editor["{fn}"]')
        assert (editor["dataset_id"], editor["role"]) == ("odds_api", "roles/bigquery.dataEditor")
        assert one(tf, f'google_project_iam_member.datastore_user["{fn}"]')["role"] == "roles/datastore.user"
        staging_reader = one(tf, f'google_storage_bucket_iam_member.staging_reader["{fn}"]')
        assert (staging_reader["bucket"], staging_reader["role"]) == ("oddsbatch-test-landing-staging",
                                                                      "roles/storage.objectViewer")
        assert one(tf, f'google_storage_bucket_iam_member.staging_writer["{fn}"]')["bucket"] == (
            "oddsbatch-test-landing-staging")
    for name in ("staging_reader", "staging_writer"):
        block = raw_resource(raw, "google_storage_bucket_iam_member", name)
        assert block["member"] == "${google_service_account.functions[each.key].member}" and "condition" not in block
    assert raw_resource(raw, "google_storage_bucket_iam_member", "staging_writer")["role"] == (
        "${google_project_iam_custom_role.quarantine_writer.id}")
    role = one(tf, "google_project_iam_custom_role.quarantine_writer")
    assert sorted(role["permissions"]) == ["storage.objects.create", "storage.objects.delete", "storage.objects.update"]
    # Members point at the function's own account (references are unknown to tfparse: read the source).
    for name in ("landing_reader", "quarantine_writer"):
        block = raw_resource(raw, "google_storage_bucket_iam_member", name)
        assert block["member"] == "${google_service_account.functions[each.key].member}"
    assert raw_resource(raw, "google_storage_bucket_iam_member", "quarantine_writer")["role"] == (
        "${google_project_iam_custom_role.quarantine_writer.id}")
    for name in ("bigquery_job_user", "datastore_user"):
        assert raw_resource(raw, "google_project_iam_member", name)["member"] == (
            "${google_service_account.functions[each.key].member}")
    # No project-wide role beyond these, no primitive role anywhere.
    project_roles = sorted({r["role"] for r in resources(tf, "google_project_iam_member").values()})
    assert project_roles == ["roles/artifactregistry.writer", "roles/bigquery.jobUser", "roles/datastore.user",
                             "roles/eventarc.eventReceiver", "roles/logging.logWriter", "roles/pubsub.publisher",
                             "roles/run.invoker", "roles/storage.objectViewer"]
    # The three build roles belong to the build account alone (tests/terraform/test_deploy_rules.py).
    for role in ("roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectViewer"):
        holders = [a for a, r in resources(tf, "google_project_iam_member").items() if r["role"] == role]
        assert holders == [f'google_project_iam_member.build["{role}"]'], holders


def test_trigger_account_receives_events_and_invokes_only_the_functions(tf, raw):
    assert one(tf, "google_service_account.trigger")["account_id"] == "oddsbatch-trigger"
    assert one(tf, "google_project_iam_member.trigger_event_receiver")["role"] == "roles/eventarc.eventReceiver"
    # run.invoker on the project from the first apply (no per-service binding behind a second
    # apply: tests/terraform/test_deploy_rules.py), for the trigger account only.
    invokers = [b for b in resources(tf, "google_project_iam_member").values() if b["role"] == "roles/run.invoker"]
    assert len(invokers) == 1 and invokers[0]["project"] == "oddsbatch-test"
    assert invokers[0]["member"]["__attribute__"] == "google_service_account.trigger.member"
    assert resources(tf, "google_cloud_run_v2_service_iam_member") == {}
    publisher = one(tf, "google_project_iam_member.gcs_pubsub_publisher")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert publisher["member"]["__attribute__"] == "data.google_storage_project_service_account.gcs.member"


def test_alerts_have_the_runbook_thresholds_and_filters(tf):
    # The counters of local.log_metrics; the oldest-pending distribution: tests/terraform/test_sweep_terraform.py.
    metrics = {m["name"]: m for a, m in resources(tf, "google_logging_metric").items() if a.startswith("google_logging_metric.metrics[")}
    assert sorted(metrics) == ["oddsbatch/auth_errors", "oddsbatch/failed_batches",
                               "oddsbatch/quarantined_files", "oddsbatch/stale_locks", "oddsbatch/transient_failures"]
    scope = 'resource.type="cloud_run_revision" AND resource.labels.service_name=("game-lines" OR "player-props")'
    for m in metrics.values():
        assert m["filter"].startswith(scope)
        assert (m["metric_descriptor"]["metric_kind"], m["metric_descriptor"]["value_type"]) == ("DELTA", "INT64")
    # Terminal failures page at once, transient ones (which retry by themselves) past their own threshold.
    terminal, transient = metrics["oddsbatch/failed_batches"]["filter"], metrics["oddsbatch/transient_failures"]["filter"]
    assert 'jsonPayload.message="failed"' in terminal and "jsonPayload.transient=false" in terminal
    assert 'jsonPayload.message="failed"' in transient and "jsonPayload.transient=true" in transient
    assert "jsonPayload.transient=true" not in terminal
    assert 'jsonPayload.message="quarantined"' in metrics["oddsbatch/quarantined_files"]["filter"]
    stale = metrics["oddsbatch/stale_locks"]["filter"]
    assert 'jsonPayload.message="batch_started"' in stale and 'jsonPayload.how="stale_takeover"' in stale
    auth = metrics["oddsbatch/auth_errors"]["filter"]
    for needle in ("httpRequest.status=401", "httpRequest.status=403", '"PERMISSION_DENIED"'):
        assert needle in auth
    policies = {a: p for a, p in resources(tf, "google_monitoring_alert_policy").items()
                if a.startswith("google_monitoring_alert_policy.alerts[")}
    assert len(policies) == 5
    for addr, p in policies.items():
        key = addr.split('"')[1]
        cond = p["conditions"]["condition_threshold"]
        assert cond["filter"].startswith(f'metric.type="logging.googleapis.com/user/oddsbatch/{key}"')
        assert cond["comparison"] == "COMPARISON_GT"
        assert cond["aggregations"]["per_series_aligner"] == "ALIGN_SUM"
        assert cond["aggregations"]["cross_series_reducer"] == "REDUCE_SUM"
        assert p["notification_channels"] == ["projects/oddsbatch-test/notificationChannels/123"]
    thresholds = {a.split('"')[1]: p["conditions"]["condition_threshold"]["threshold_value"] for a, p in policies.items()}
    assert thresholds["failed_batches"] == 0 and thresholds["transient_failures"] == 20
    auth_cond = policies['google_monitoring_alert_policy.alerts["auth_errors"]']["conditions"]["condition_threshold"]
    assert auth_cond["threshold_value"] == 10
    assert auth_cond["aggregations"]["alignment_period"] == "300s"


def test_outputs_deploy_sh_needs(tf):
    outputs = {o["__tfmeta"]["label"]: o for o in tf["output"]}
    for name in ("bucket_name", "dataset_id", "service_accounts", "trigger_service_account", "region", "project_id"):
        assert name in outputs, name
    assert outputs["bucket_name"]["value"] == "oddsbatch-test-landing"
    assert outputs["region"]["value"] == "us-central1"
    assert outputs["project_id"]["value"] == "oddsbatch-test"


def _plain(block: dict) -> dict:
    return {k: v for k, v in block.items() if k not in ("__tfmeta", "id")}


def test_a_dead_letter_older_than_a_sweep_period_alerts(tf, raw):
    policy = one(tf, "google_monitoring_alert_policy.dead_letter_age")
    cond = policy["conditions"]["condition_threshold"]
    assert cond["threshold_value"] == 900 and cond["comparison"] == "COMPARISON_GT"  # the default sweep: every 15 min
    assert cond["aggregations"]["per_series_aligner"] == "ALIGN_MAX"
    raw_filter = raw_resource(raw, "google_monitoring_alert_policy", "dead_letter_age")["conditions"][0]["condition_threshold"][0]["filter"]
    assert "pubsub.googleapis.com/subscription/oldest_unacked_message_age" in raw_filter
    assert "google_pubsub_subscription.dead_letters.name" in raw_filter
    assert policy["notification_channels"] == ["projects/oddsbatch-test/notificationChannels/123"]


def _legacy_views(tf) -> dict[str, tuple[str, dict]]:
    """table_id -> (address, block) of the google_bigquery_table resources with a view block."""
    return {r["table_id"]: (addr, r) for addr, r in resources(tf, "google_bigquery_table").items() if r.get("view")}


def test_compatibility_views_are_the_shared_sql_files_in_the_legacy_dataset(tf, raw):
    """legacy.tf: each view of schemas/legacy_views/ once, its query the text `oddsbatch up` runs
    (same project and datasets), standard SQL, in dataset nba_raw; a view that reads another view
    created after it; the legacy table functions read the views (the shape is written once)."""
    from oddsbatch.routines import LEGACY_DATASET, all_legacy_views

    views = _legacy_views(tf)
    assert set(views) == {v.name for v in all_legacy_views()} == {
        "odds_api_game_lines", "odds_api_player_points_props", "odds_api_game_lines_preferred"}
    ds = one(tf, "google_bigquery_dataset.legacy")
    assert ds["dataset_id"] == LEGACY_DATASET == "nba_raw"
    for view in all_legacy_views():
        address, block = views[view.name]
        body = block["view"][0] if isinstance(block["view"], list) else block["view"]
        assert body["query"] == view.query("oddsbatch-test", DEFAULTS.dataset, LEGACY_DATASET), view.name
        assert body["use_legacy_sql"] is False
        assert ("legacy_views_reading_views[" in address) == bool(view.reads), address
    for routine_id, view in (("odds_api_game_lines_legacy", "odds_api_game_lines"),
                             ("odds_api_player_points_props", "odds_api_player_points_props"),
                             ("odds_api_game_lines_preferred", "odds_api_game_lines_preferred")):
        body = _routine(tf, routine_id)["definition_body"]
        assert f"FROM `oddsbatch-test.nba_raw.{view}`\nWHERE game_date BETWEEN start_date AND end_date" in body
    # BigQuery resolves a routine's body at creation: every stage waits for the views
    for stage in ("stage0", "stage1", "stage2"):
        waits_for = str(raw_resource(raw, "google_bigquery_routine", stage)["depends_on"])
        assert "google_bigquery_table.legacy_views" in waits_for and "legacy_views_reading_views" in waits_for, stage
