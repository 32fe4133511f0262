"""Start local-bigquery with one fidelity fix: MERGE into a table with require_partition_filter.

BigQuery accepts a MERGE whose ON clause filters the target's partition column (that is how
a MERGE prunes the target to one day). local-bigquery 0.3.2 runs a MERGE as internal
statements over the target that carry no WHERE, and its partition-filter rule rejects
them, so no MERGE into such a table can succeed. This launcher applies the rule once, to
the MERGE's ON clause, as BigQuery does, and lets the internal statements through.

Run with the emulator's own Python: `python bigquery_emulator.py serve --host ... --port ...`.
"""

import contextvars
import sys

from local_bigquery.catalog import metadata, names
from local_bigquery.cli import main
from local_bigquery.errors import BigQueryError
from local_bigquery.jobs import merge
from local_bigquery.models import Table
from local_bigquery.sql.rules import tables as table_rules
from sqlglot import exp

_inside_merge = contextvars.ContextVar("oddsbatch_inside_merge", default=False)
_original_check = table_rules._check
_original_run = merge.run


def _check(tree, table, is_target):
    try:
        return _original_check(tree, table, is_target)
    except BigQueryError as error:
        if _inside_merge.get() and "partition elimination" in error.message:
            return None
        raise


def _run(cur, tree, context):
    target = tree.this
    project_id, dataset_id, table_id = names.reference(target, context.project_id, context.dataset_id)
    stored = metadata.load(Table, project_id, dataset_id, table_id) or Table()
    if stored.requirePartitionFilter:
        field = (stored.timePartitioning and stored.timePartitioning.field) or "_PARTITIONTIME"
        on_columns = {c.name.casefold() for c in tree.args["on"].find_all(exp.Column)}
        if field.casefold() not in on_columns:
            raise BigQueryError(
                "invalidQuery",
                f"Cannot query over table '{target.name}' without a filter over column(s) "
                f"'{field}' that can be used for partition elimination",
            )
    token = _inside_merge.set(True)
    try:
        return _original_run(cur, tree, context)
    finally:
        _inside_merge.reset(token)


table_rules._check = _check
merge.run = _run

if __name__ == "__main__":
    sys.argv[0] = "local-bigquery"
    sys.exit(main())
