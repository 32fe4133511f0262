"""Start local-bigquery with two fidelity fixes: MERGE into a table with require_partition_filter,
and BigQuery's queue limit of mutating DML statements per table.

BigQuery accepts a MERGE whose ON clause filters the target's partition column (that is how
a MERGE prunes the target to one day). local-bigquery 0.3.2 runs a MERGE as internal
statements over the target that carry no WHERE, and its partition-filter rule rejects
them, so no MERGE into such a table can succeed. This launcher applies the rule once, to
the MERGE's ON clause, as BigQuery does, and lets the internal statements through.

The DML queue (bigquery_dml.DmlQueueLimit): BigQuery runs 2 mutating DML statements per table
and queues 20; the next fails with reason resourcesExceeded, "Too many DML statements
outstanding against table ..., limit is 20". The launcher counts each UPDATE / DELETE / MERGE
job from its insertion to its end against its target table, and fails the job past the
limit at once with that reason and message (a DONE job with errorResult, as BigQuery reports
a failed job). `--dml-running N --dml-queued M` (default BigQuery's 2 and 20) set the numbers,
so a test meets the limit with a small day. Each refusal is logged on one line
(`dml_limit_rejected table=... job=...`).

Run with the emulator's own Python: `python bigquery_emulator.py serve --host ... --port ...
[--dml-running 2 --dml-queued 20]`.
"""

import argparse
import contextvars
import sys

import sqlglot
from bigquery_dml import REASON, DmlQueueLimit
from local_bigquery import errors as bq_errors

from local_bigquery.catalog import metadata, names
from local_bigquery.cli import main
from local_bigquery.errors import BigQueryError
from local_bigquery.jobs import merge, runner, store
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

# -- the per-table queue of mutating DML statements ----------------------------------------------
MUTATING = (exp.Update, exp.Delete, exp.Merge)
DML_LIMIT = DmlQueueLimit()
_original_submit = runner.submit
_original_execute = runner._execute
# BigQuery answers resourcesExceeded with HTTP 400: https://cloud.google.com/bigquery/docs/error-messages
bq_errors.STATUSES.setdefault(REASON, (400, "RESOURCE_EXHAUSTED"))


def _mutating_target(project_id, configuration) -> str | None:
    """project:dataset.table of a single UPDATE / DELETE / MERGE query job, else None."""
    query = configuration.query
    if query is None or not query.query or configuration.dryRun:
        return None
    try:
        trees = sqlglot.parse(query.query, read="bigquery")
    except sqlglot.errors.SqlglotError:
        return None  # local-bigquery reports the syntax error itself
    if len(trees) != 1 or not isinstance(trees[0], MUTATING):
        return None
    table = trees[0].this
    if not isinstance(table, exp.Table):
        table = trees[0].find(exp.Table)
    dataset = query.defaultDataset.datasetId if query.defaultDataset else None
    project, dataset, name = names.reference(table, project_id, dataset)
    return f"{project}:{dataset}.{name}"


def _submit(project_id, job_id, configuration, upload=None):
    table = _mutating_target(project_id, configuration)
    if table is None:
        return _original_submit(project_id, job_id, configuration, upload)
    if store.load(project_id, job_id):  # a duplicate id answers 409 whatever the queue holds
        return _original_submit(project_id, job_id, configuration, upload)
    key = (project_id, job_id)
    refused = DML_LIMIT.admit(table, key)
    if refused is not None:
        print(f"dml_limit_rejected table={table} job={job_id} rejected={DML_LIMIT.rejected}", flush=True)
        job = runner._job(project_id, job_id, configuration.replace(jobType="QUERY"))
        return store.save(runner._done(job, runner.JobStatistics(query={}), BigQueryError(REASON, refused)))
    try:
        return _original_submit(project_id, job_id, configuration, upload)
    except BaseException:
        DML_LIMIT.finish(key)
        raise


def _execute(job, *args, **kwargs):
    try:
        return _original_execute(job, *args, **kwargs)
    finally:
        DML_LIMIT.finish((job.jobReference.projectId, job.jobReference.jobId))


runner.submit = _submit
runner._execute = _execute


def _limits_from_argv(argv: list[str]) -> list[str]:
    """Take --dml-running / --dml-queued out of argv (local-bigquery's CLI does not know them)."""
    global DML_LIMIT
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dml-running", type=int, default=DML_LIMIT.running)
    parser.add_argument("--dml-queued", type=int, default=DML_LIMIT.queued)
    known, rest = parser.parse_known_args(argv)
    DML_LIMIT = DmlQueueLimit(known.dml_running, known.dml_queued)
    print(f"dml_limit running={DML_LIMIT.running} queued={DML_LIMIT.queued}", flush=True)
    return rest


if __name__ == "__main__":
    sys.argv[1:] = _limits_from_argv(sys.argv[1:])
    sys.argv[0] = "local-bigquery"
    sys.exit(main())
