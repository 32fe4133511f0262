"""BigQuery's partition-filter rule on logical views, on the emulator (the launcher's model,
shared/oddsbatch/local/bigquery_emulator.py).

BigQuery creates a view over a table with require_partition_filter without any filter, and the
rule applies when the view is queried: "The query that defines a view is run each time the view
is queried" (https://cloud.google.com/bigquery/docs/views-intro), and the table's queries "require
a partition filter that can be used for partition elimination" (Table.requirePartitionFilter,
https://cloud.google.com/bigquery/docs/reference/rest/v2/tables). A query without one fails with
invalidQuery, HTTP 400 (https://cloud.google.com/bigquery/docs/error-messages) and the message
"Cannot query over table '<project>.<dataset>.<table>' without a filter over column(s) '<column>'
that can be used for partition elimination": local-bigquery's own wording for the table, the text
BigQuery answers in public reports (apache/incubator-superset#7167); the section "Require a
partition filter in queries" of https://cloud.google.com/bigquery/docs/querying-partitioned-tables
covers the rule. local-bigquery 0.3.2 refused to create such a view.

Both ways a view is made (tables.insert with a view body, which Terraform's google_bigquery_table
uses, and CREATE VIEW), a view over a view, a view that filters itself, and a table without the
requirement (the model must not be harsher than BigQuery).
"""

from __future__ import annotations

import uuid

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def views(stack):
    client = stack.bigquery()
    dataset = f"pf_views_{uuid.uuid4().hex[:8]}"
    client.create_dataset(f"{stack.project}.{dataset}")
    path = f"{stack.project}.{dataset}"
    for name, required in (("required", True), ("optional", False)):
        table = bigquery.Table(f"{path}.{name}", schema=[bigquery.SchemaField("day", "DATE"),
                                                         bigquery.SchemaField("n", "INT64")])
        table.time_partitioning = bigquery.TimePartitioning(field="day")
        table.require_partition_filter = required
        client.create_table(table)
        client.query(f"INSERT INTO `{path}.{name}` (day, n) VALUES ('2025-01-01', 1), ('2025-01-02', 2)").result()
    # tables.insert with a view body (Terraform's google_bigquery_table view block)
    api_view = bigquery.Table(f"{path}.by_api")
    api_view.view_query = f"SELECT day, n * 10 AS tens FROM `{path}.required`"
    client.create_table(api_view)
    # DDL, a view over that view, a view that filters the partitioning column itself, and one over
    # the table without the requirement
    for statement in (f"CREATE VIEW `{path}.by_ddl` AS SELECT day, n FROM `{path}.required` WHERE n > 0",
                      f"CREATE VIEW `{path}.nested` AS SELECT * FROM `{path}.by_api`",
                      f"CREATE VIEW `{path}.filtered` AS SELECT n FROM `{path}.required` WHERE day = '2025-01-02'",
                      f"CREATE VIEW `{path}.over_optional` AS SELECT day, n FROM `{path}.optional`"):
        client.query(statement).result()
    return client, path


def _rows(client, statement: str) -> list[tuple]:
    return [tuple(r.values()) for r in client.query(statement).result()]


def _message(path: str, table: str) -> str:
    return (f"Cannot query over table '{path}.{table}' without a filter over column(s) 'day' "
            "that can be used for partition elimination")


@pytest.mark.parametrize("view", ["by_api", "by_ddl", "nested"])
def test_a_query_on_the_view_without_the_filter_is_refused_with_bigquerys_message(views, view):
    client, path = views
    with pytest.raises(BadRequest) as refused:
        client.query(f"SELECT COUNT(*) FROM `{path}.{view}`").result()
    assert _message(path, "required") in refused.value.message
    assert refused.value.errors[0]["reason"] == "invalidQuery"
    # a filter on another column is no partition filter
    other = "n" if view == "by_ddl" else "tens"
    with pytest.raises(BadRequest, match="without a filter over column"):
        client.query(f"SELECT COUNT(*) FROM `{path}.{view}` WHERE {other} > 0").result()


def test_with_the_filter_the_view_answers_from_its_table(views):
    client, path = views
    assert _rows(client, f"SELECT day, tens FROM `{path}.by_api` WHERE day = '2025-01-02'")[0][1] == 20
    assert _rows(client, f"SELECT n FROM `{path}.by_ddl` WHERE day BETWEEN '2025-01-01' AND '2025-01-02' ORDER BY n") == [(1,), (2,)]
    assert _rows(client, f"SELECT tens FROM `{path}.nested` WHERE day = '2025-01-01'") == [(10,)]
    # the filter may sit in a subquery of the caller, as in any query on the table itself
    assert _rows(client, f"SELECT SUM(tens) FROM (SELECT * FROM `{path}.by_api` WHERE day >= '2025-01-01')") == [(30,)]


def test_a_view_that_filters_itself_or_a_table_without_the_requirement_needs_no_filter(views):
    """Not harsher than BigQuery: the rule is the base table's, met by the view's own WHERE."""
    client, path = views
    assert _rows(client, f"SELECT n FROM `{path}.filtered`") == [(2,)]
    assert _rows(client, f"SELECT COUNT(*) FROM `{path}.over_optional`") == [(2,)]


def test_the_base_table_itself_keeps_the_rule(views):
    client, path = views
    with pytest.raises(BadRequest) as refused:
        client.query(f"SELECT COUNT(*) FROM `{path}.required`").result()
    assert _message(path, "required") in refused.value.message
