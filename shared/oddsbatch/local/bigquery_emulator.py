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

Snapshot isolation of mutating DML (bigquery_dml.SnapshotIsolation): BigQuery runs each UPDATE /
DELETE / MERGE on the snapshot taken when it starts, and of two that ran at once on one partition
the later to commit fails with "Could not serialize access to table ... due to concurrent update"
(reason invalidQuery, HTTP 400). local-bigquery takes a per-table write lock, so its statements
never overlap; the launcher records each statement's partitions at admission (for a MERGE the
`partition_column = @param` / literal in its ON clause, for UPDATE / DELETE in its WHERE; the whole
table when unknown) and its snapshot when it starts (admission, or leaving BigQuery's PENDING queue
of the 2 running), and fails it, once it holds the lock, if an overlapping statement committed
after its snapshot. Each conflict is logged on one line (`dml_conflict table=... job=...`).
`--dml-conflicts off` switches the model off (default on).

DML latency: on BigQuery a mutating statement runs for seconds between its snapshot and its
commit; local-bigquery commits one in milliseconds, so a concurrent writer almost never lands
inside a MERGE's window. `--dml-latency-ms N` (default 0) holds each mutating statement N ms
after it starts running and before it commits, so overlaps happen as often as on BigQuery
(with the conflict model on: without it nothing could conflict, and the option is refused).

Run with the emulator's own Python: `python bigquery_emulator.py serve --host ... --port ...
[--dml-running 2 --dml-queued 20 --dml-conflicts on --dml-latency-ms 0]`.
"""

import argparse
import contextlib
import contextvars
import sys
import time

import sqlglot
from bigquery_dml import CONFLICT_REASON, REASON, WHOLE_TABLE, DmlQueueLimit, SnapshotIsolation
from local_bigquery import errors as bq_errors

from local_bigquery.catalog import metadata, names
from local_bigquery.engine import database
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
    if ISOLATION is not None:  # admitted: it starts now, or when it leaves the PENDING queue
        try:
            partitions = _partitions(project_id, configuration)
        except Exception:  # noqa: BLE001 - unknown target metadata: the whole table
            partitions = WHOLE_TABLE
        ISOLATION.admit(table, key, partitions)
    try:
        return _original_submit(project_id, job_id, configuration, upload)
    except BaseException:
        _finish(key)
        raise


def _finish(key) -> None:
    _held.discard(key)
    DML_LIMIT.finish(key)
    if ISOLATION is not None:
        ISOLATION.finish(key)


def _execute(job, *args, **kwargs):
    key = (job.jobReference.projectId, job.jobReference.jobId)
    token = _current_job.set(key)
    try:
        return _original_execute(job, *args, **kwargs)
    finally:
        _current_job.reset(token)
        _finish(key)


runner.submit = _submit
runner._execute = _execute

# -- snapshot isolation of mutating DML per (table, partition) -----------------------------------
# https://cloud.google.com/bigquery/docs/data-manipulation-language ("DML statement conflicts"):
# mutating statements running at once conflict when they mutate the same partition. The error is
# HTTP 400, reason invalidQuery, "Could not serialize access to table P:D.T due to concurrent update"
# (https://cloud.google.com/bigquery/docs/error-messages: invalidQuery is a 400).
ISOLATION: SnapshotIsolation | None = SnapshotIsolation(DML_LIMIT.running)
_current_job = contextvars.ContextVar("oddsbatch_current_job", default=None)
_original_writing = database.writing


def _constant(node, parameters: dict) -> str | None:
    """The value of a constant operand (a named parameter, a literal, DATE 'x'), else None."""
    if isinstance(node, exp.Parameter):
        return parameters.get(node.name.casefold())
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        node = node.this
    if isinstance(node, exp.Literal):
        return str(node.this)
    return None


def _partitions(project_id, configuration) -> frozenset | None:
    """The partitions one MERGE / UPDATE / DELETE touches: the values its ON (MERGE) or WHERE
    clause pins the target's partitioning column to with a top-level equality; WHOLE_TABLE when
    the table is not partitioned by a column or the clause does not say."""
    query = configuration.query
    tree = sqlglot.parse_one(query.query, read="bigquery")
    target = tree.this if isinstance(tree.this, exp.Table) else tree.find(exp.Table)
    dataset = query.defaultDataset.datasetId if query.defaultDataset else None
    project, dataset, name = names.reference(target, project_id, dataset)
    stored = metadata.load(Table, project, dataset, name)
    field = None
    if stored is not None and stored.timePartitioning and stored.timePartitioning.field:
        field = stored.timePartitioning.field
    elif stored is not None and stored.rangePartitioning and stored.rangePartitioning.field:
        field = stored.rangePartitioning.field
    condition = tree.args.get("on") if isinstance(tree, exp.Merge) else tree.args.get("where")
    if isinstance(condition, exp.Where):
        condition = condition.this
    if field is None or condition is None:
        return WHOLE_TABLE
    parameters = {(p.name or "").casefold(): p.parameterValue.value if p.parameterValue else None
                  for p in (query.queryParameters or [])}
    alias = target.alias_or_name.casefold()
    values = set()
    for part in (condition.flatten() if isinstance(condition, exp.And) else [condition]):
        if not isinstance(part, exp.EQ):
            continue
        for column, other in ((part.this, part.expression), (part.expression, part.this)):
            if (isinstance(column, exp.Column) and column.name.casefold() == field.casefold()
                    and (not column.table or column.table.casefold() == alias)):
                value = _constant(other, parameters)
                if value is not None:
                    values.add(value)
    return frozenset(values) if len(values) == 1 else WHOLE_TABLE


# A queued statement waits to leave the PENDING queue at most this long before it takes the lock.
PENDING_WAIT_SECONDS = 5.0
# Each mutating statement runs this long between its start and its commit (--dml-latency-ms).
DML_LATENCY_SECONDS = 0.0
_held: set = set()  # jobs already held for DML_LATENCY_SECONDS (a MERGE takes the write lock more than once)


@contextlib.contextmanager
def _writing(*table):
    """local-bigquery's per-table write lock, plus the commit-time check of the statement it guards."""
    job = _current_job.get()
    name = f"{table[0]}:{table[1]}.{table[2]}" if len(table) == 3 else ""
    if ISOLATION is None or job is None or not ISOLATION.tracks(job, name):
        with _original_writing(*table):
            yield
        return
    ISOLATION.wait_started(job, PENDING_WAIT_SECONDS)
    if DML_LATENCY_SECONDS and job not in _held:
        _held.add(job)
        time.sleep(DML_LATENCY_SECONDS)  # running on its snapshot, not yet committed, lock not held
    with _original_writing(*table):
        refused = ISOLATION.check(job)
        if refused is not None:
            print(f"dml_conflict table={name} job={job[1]} conflicts={ISOLATION.conflicts}", flush=True)
            error = BigQueryError(CONFLICT_REASON, refused)
            error.location = None  # BigQuery reports the conflict against the table, not a query position
            raise error
        yield
        ISOLATION.commit(job)


database.writing = _writing


def _limits_from_argv(argv: list[str]) -> list[str]:
    """Take --dml-running / --dml-queued out of argv (local-bigquery's CLI does not know them)."""
    global DML_LIMIT, ISOLATION, DML_LATENCY_SECONDS
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dml-running", type=int, default=DML_LIMIT.running)
    parser.add_argument("--dml-queued", type=int, default=DML_LIMIT.queued)
    parser.add_argument("--dml-conflicts", choices=("on", "off"), default="on")
    parser.add_argument("--dml-latency-ms", type=int, default=0)
    known, rest = parser.parse_known_args(argv)
    if known.dml_latency_ms < 0:
        parser.error(f"--dml-latency-ms must be >= 0, got {known.dml_latency_ms}")
    if known.dml_latency_ms and known.dml_conflicts == "off":  # the hold lives in the isolation model's path
        parser.error("--dml-latency-ms needs --dml-conflicts on")
    DML_LATENCY_SECONDS = known.dml_latency_ms / 1000
    DML_LIMIT = DmlQueueLimit(known.dml_running, known.dml_queued)
    ISOLATION = SnapshotIsolation(DML_LIMIT.running) if known.dml_conflicts == "on" else None
    print(f"dml_limit running={DML_LIMIT.running} queued={DML_LIMIT.queued} conflicts={known.dml_conflicts} "
          f"latency_ms={known.dml_latency_ms}", flush=True)
    return rest


if __name__ == "__main__":
    sys.argv[1:] = _limits_from_argv(sys.argv[1:])
    sys.argv[0] = "local-bigquery"
    sys.exit(main())
