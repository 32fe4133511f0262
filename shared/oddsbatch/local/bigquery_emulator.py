"""Start local-bigquery with BigQuery's rules it lacks: MERGE into a table with
require_partition_filter, the queue limit of mutating DML statements per table, the DML conflict
rules on snapshots, and unique job ids.

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

BigQuery's DML conflict rules (bigquery_dml.SnapshotIsolation, which quotes the DML page rule by
rule): each UPDATE / DELETE / MERGE runs on the snapshot taken when it starts running (when it leaves
the PENDING queue of the 2 running, however long it waited: jobs.get says PENDING until then); a
statement that only inserts (an INSERT, a MERGE whose UPDATE/DELETE clauses were not invoked) never
conflicts, so two insert-only MERGEs of one new key both commit and the key is stored twice; one that
updates or deletes existing rows conflicts when another that did so committed to the same partition
after its snapshot, and is rerun on a fresh snapshot up to three times before the client gets "Could
not serialize access to table ... due to concurrent update" (reason invalidQuery, HTTP 400). Each run
is a DuckDB transaction opened at its start and committed after its hold (the rules at commit), and a
queued statement waits on a thread of its own, not one of local-bigquery's 8 workers. Partitions come
from the statement (`partition_column = @param` / literal in a MERGE's ON clause, an UPDATE's or
DELETE's WHERE, or the dates of `partition_column IN UNNEST(@array)`, a MERGE of several dates; the
whole table when unknown). Each conflict is logged on one line (`dml_conflict
table=... job=... attempt=N`); `--dml-conflicts off` switches the model off (default on).

Logical views over a table with require_partition_filter: BigQuery creates them and applies the rule
when the view is queried (a query on the view without a filter on the partitioning column fails with
the table's "Cannot query over table ... without a filter over column(s) ..." message; with one it
runs). local-bigquery refuses to create them; the launcher lets the definition through and checks
each query on a view against the base tables it reads (below, with the documentation).

Job ids: a job inserted under an id that exists is refused with 409 Already Exists (local-bigquery's
check, made atomic with the insertion here); jobs.get of a running job says RUNNING until it commits,
then DONE with its error if it failed; of an unknown id, 404.

DML latency: on BigQuery a mutating statement runs for seconds between its snapshot and its
commit; local-bigquery commits one in milliseconds, so a concurrent writer almost never lands
inside a MERGE's window. `--dml-latency-ms N` (default 0) holds each run of a mutating statement
(insert-only MERGEs included) N ms after its start and before its commit, so overlaps happen as often
as on BigQuery (with the conflict model on: without it nothing could overlap, and the option is
refused). Tests hold one statement exactly: a job labelled `oddsbatch-hold=NAME` waits before each
commit until the file <data-dir>/dml-holds/NAME.<run> exists (log `dml_hold name=NAME job=ID
attempt=N`).

Load jobs from Cloud Storage (configuration.load.sourceUris = gs://bucket/object): BigQuery reads the
objects itself. The launcher reads them from the local Cloud Storage (fake-gcs-server), found through
STORAGE_EMULATOR_HOST as the functions find it, over its JSON API, into a temporary directory for the
job, and local-bigquery loads those files as it loads an upload. The rules, from BigQuery's pages:
- at most 10,000 source URIs per job configuration (https://cloud.google.com/bigquery/quotas, "Load
  jobs"); more fails jobs.insert with 400 "Too many sources provided: N. Limit is 10000." (BigQuery's
  answer, met in MobilityData/mobility-feed-api#1609);
- each URI may hold one '*' wildcard, after the bucket name (JobConfigurationLoad.sourceUris,
  https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad); it matches
  every object whose name fits, '/' included; a second '*' or one in the bucket name is refused;
- an object that does not exist fails the job (DONE with errorResult) with reason notFound, "Not found:
  URI gs://bucket/object" (as BigQuery answers it: googleapis/google-cloud-node#1177); so does a
  wildcard URI that matches no object;
- a URI with a generation number ("gs://b/o#123") fails the load ("If you include a generation number
  in the Cloud Storage URI, then the load job fails": loading-data-cloud-storage-json, Limitations).

Run with the emulator's own Python: `python bigquery_emulator.py serve --host ... --port ...
[--dml-running 2 --dml-queued 20 --dml-conflicts on --dml-latency-ms 0]`.
"""

import argparse
import concurrent.futures
import contextlib
import contextvars
import sys
import threading
import time
from pathlib import Path

import duckdb
import sqlglot
from bigquery_dml import CONFLICT_REASON, REASON, RERUNS, WHOLE_TABLE, DmlQueueLimit, SnapshotIsolation
from local_bigquery import errors as bq_errors

from local_bigquery.catalog import metadata, names
from local_bigquery.catalog import tables as catalog_tables
from local_bigquery.engine import database
from local_bigquery.cli import main
from local_bigquery.errors import BigQueryError
from local_bigquery.jobs import load as load_job
from local_bigquery.jobs import merge, query, runner, store
from local_bigquery.models import Table
from local_bigquery.sql.dialect import BigQueryDialect
from local_bigquery.sql.rules import tables as table_rules
from sqlglot import exp

_inside_merge = contextvars.ContextVar("oddsbatch_inside_merge", default=False)
_in_transaction = contextvars.ContextVar("oddsbatch_in_transaction", default=False)
_original_check = table_rules._check
_original_run = merge.run


def _check(tree, table, is_target):
    try:
        result = _original_check(tree, table, is_target)
    except BigQueryError as error:
        if "partition elimination" in error.message and (_inside_merge.get() or _defines_view(tree)):
            return None
        raise
    if not is_target and not _defines_view(tree):
        _check_view_partition_filters(tree, table)
    return result


# -- logical views over tables with require_partition_filter ---------------------------------------
# BigQuery creates a view over such a table without a filter and applies the rule when the view is
# queried: "The query that defines a view is run each time the view is queried"
# (https://cloud.google.com/bigquery/docs/views-intro), and "queries over this table require a partition
# filter that can be used for partition elimination" (Table.requirePartitionFilter,
# https://cloud.google.com/bigquery/docs/reference/rest/v2/tables), so a query on the view that filters
# the partitioning column runs and one that does not fails with the table's message (local-bigquery's
# wording for the table, as BigQuery answers it in public reports: apache/incubator-superset#7167;
# the rule: https://cloud.google.com/bigquery/docs/querying-partitioned-tables). local-bigquery 0.3.2 checks the
# rule on the view's own query when the view is created and refuses it, and never checks it again when
# the view is queried. The launcher moves the check: a logical view's definition is let through, and a
# query naming a view is checked against every base table the view reads (through nested views), with
# the filters of the query and of the views in between, by the emulator's own rule (a column of the
# partitioning column's name in a WHERE clause).
_defining_view = contextvars.ContextVar("oddsbatch_defining_view", default=False)
_original_create_table = catalog_tables.create


def _defines_view(tree) -> bool:
    """The statement defines a logical view: CREATE VIEW, or tables.insert with a view body."""
    if _defining_view.get():
        return True
    return (isinstance(tree, exp.Create) and tree.args.get("kind") == "VIEW"
            and tree.find(exp.MaterializedProperty) is None)


def _create_table(project_id, dataset_id, body, translate):
    token = _defining_view.set(bool(body.view))
    try:
        return _original_create_table(project_id, dataset_id, body, translate)
    finally:
        _defining_view.reset(token)


def _where_columns(tree) -> set[str]:
    return {column.name.casefold() for where in tree.find_all(exp.Where) for column in where.find_all(exp.Column)}


def _unfiltered_base_tables(project_id, dataset_id, table_id, depth=0) -> list[tuple[str, str]]:
    """(table, partitioning column) of each base table with require_partition_filter that the view
    reads without filtering it in its own query or a nested view's."""
    stored = metadata.load(Table, project_id, dataset_id, table_id)
    query = stored and stored.view and stored.view.query
    if not query or depth > 16:
        return []
    body = sqlglot.parse_one(query, dialect=BigQueryDialect)
    filtered = _where_columns(body)
    ctes = {cte.alias_or_name.casefold() for cte in body.find_all(exp.CTE)}
    unfiltered = []
    for read in body.find_all(exp.Table):
        if not read.db or (not read.catalog and read.name.casefold() in ctes):
            continue  # a CTE (a view's references are qualified with their dataset: views-intro)
        reference = names.reference(read, project_id, dataset_id)
        base = metadata.load(Table, *reference) or Table()
        if base.view:
            needed = _unfiltered_base_tables(*reference, depth=depth + 1)
        elif base.requirePartitionFilter:
            field = (base.timePartitioning and base.timePartitioning.field) or "_PARTITIONTIME"
            needed = [(".".join(reference), field)]
        else:
            needed = []
        unfiltered += [(name, field) for name, field in needed
                       if not {field.casefold(), "_partitiondate"} & filtered]
    return unfiltered


def _check_view_partition_filters(tree, table) -> None:
    filtered = _where_columns(tree)
    for name, field in _unfiltered_base_tables(table.catalog, table.db, table.name):
        if not {field.casefold(), "_partitiondate"} & filtered:
            raise BigQueryError(
                "invalidQuery",
                f"Cannot query over table '{name}' without a filter over column(s) '{field}' "
                "that can be used for partition elimination",
            )


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
        if _in_transaction.get():  # the launcher's run transaction (below): the MERGE joins it
            cur = _JoinedTransaction(cur)
        return _original_run(cur, tree, context)
    finally:
        _inside_merge.reset(token)


class _JoinedTransaction:
    """A cursor whose BEGIN says "a transaction is already open" without sending it (a failed BEGIN
    would abort DuckDB's open transaction): merge.run then leaves COMMIT to the transaction's owner."""

    def __init__(self, cur):
        self._cur = cur

    def execute(self, sql, *args, **kwargs):
        if sql.strip().upper() == "BEGIN":
            raise duckdb.TransactionException("cannot start a transaction within a transaction")
        return self._cur.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._cur, name)


table_rules._check = _check
merge.run = _run
catalog_tables.create = _create_table

# -- the per-table queue of mutating DML statements ----------------------------------------------
MUTATING = (exp.Update, exp.Delete, exp.Merge)
DML_LIMIT = DmlQueueLimit()
_original_submit = runner.submit
_original_execute = runner._execute
_original_query_execute = query.execute
_original_writing = database.writing
# BigQuery answers resourcesExceeded with HTTP 400: https://cloud.google.com/bigquery/docs/error-messages
bq_errors.STATUSES.setdefault(REASON, (400, "RESOURCE_EXHAUSTED"))
bq_errors.STATUSES.setdefault("backendError", (500, "INTERNAL"))  # the same page: backendError is a 500 or 503
# Job ids are unique per project: a second jobs.insert under an existing id is refused with HTTP 409
# "Already Exists" (reason duplicate): https://cloud.google.com/bigquery/docs/error-messages.
# local-bigquery checks, then saves: two insertions of one id at once could both pass; this lock makes
# the check and the save one step.
_submit_lock = threading.Lock()


def _mutating_target(project_id, configuration) -> str | None:
    """project:dataset.table of a single UPDATE / DELETE / MERGE query job, else None."""
    query_config = configuration.query
    if query_config is None or not query_config.query or configuration.dryRun:
        return None
    try:
        trees = sqlglot.parse(query_config.query, read="bigquery")
    except sqlglot.errors.SqlglotError:
        return None  # local-bigquery reports the syntax error itself
    if len(trees) != 1 or not isinstance(trees[0], MUTATING):
        return None
    table = trees[0].this
    if not isinstance(table, exp.Table):
        table = trees[0].find(exp.Table)
    dataset = query_config.defaultDataset.datasetId if query_config.defaultDataset else None
    project, dataset, name = names.reference(table, project_id, dataset)
    return f"{project}:{dataset}.{name}"


def _submit(project_id, job_id, configuration, upload=None):
    _check_source_uris(configuration)
    with _submit_lock:
        return _submit_once(project_id, job_id, configuration, upload)


def _submit_once(project_id, job_id, configuration, upload=None):
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
        _labels[key] = dict(configuration.labels or {})
    try:
        return _original_submit(project_id, job_id, configuration, upload)
    except BaseException:
        _finish(key)
        raise


def _finish(key) -> None:
    DML_LIMIT.finish(key)
    _labels.pop(key, None)
    if ISOLATION is not None:
        ISOLATION.finish(key)


def _execute(job, *args, **kwargs):
    """A job's run on its worker: a queued mutating statement stays PENDING (as jobs.get reports it)
    until it is among the 2 running of its table, however long that takes."""
    key = (job.jobReference.projectId, job.jobReference.jobId)
    if ISOLATION is not None and ISOLATION.tracks(key):
        ISOLATION.wait_started(key)
    token = _current_job.set(key)
    try:
        return _original_execute(job, *args, **kwargs)
    finally:
        _current_job.reset(token)
        _finish(key)


class _Workers:
    """local-bigquery's pool of 8 workers, except for admitted mutating statements: each gets a thread
    of its own, so statements waiting in the PENDING queue never take the workers the running ones
    need (the queue is bounded: running + queued per table)."""

    def __init__(self, pool):
        self.pool = pool

    def submit(self, fn, *args, **kwargs):
        job = args[1] if len(args) > 1 else None
        reference = getattr(job, "jobReference", None)
        if reference is None or ISOLATION is None or not ISOLATION.tracks((reference.projectId, reference.jobId)):
            return self.pool.submit(fn, *args, **kwargs)
        future = concurrent.futures.Future()

        def run():
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - delivered through the future, as the pool does
                future.set_exception(error)

        threading.Thread(target=run, name=f"dml-{reference.jobId}", daemon=True).start()
        return future


runner.submit = _submit
runner._execute = _execute
runner._executor = _Workers(runner._executor)

# -- snapshot isolation of mutating DML per (table, partition) -----------------------------------
# The rules are bigquery_dml's (quoted there from the DML page). How the launcher runs them on
# local-bigquery (DuckDB + DuckLake, which has snapshot isolation of its own):
# - a run of a mutating statement opens a transaction when it starts (BEGIN on the job's cursor), so
#   it reads the table as committed at its start, executes, is held --dml-latency-ms, then commits;
#   two insert-only MERGEs of one new key that overlap both see NOT MATCHED and both insert it;
# - at commit (one commit per table at a time) the rule decides: a statement that updated or deleted
#   rows fails when another that did so committed to an overlapping partition after its snapshot; it
#   is rolled back and rerun on a fresh snapshot, up to 3 times, and then the client gets the error;
# - DuckLake refuses more commits than BigQuery does (any two overlapping transactions of which one
#   deleted or updated rows). When the rule lets a statement commit but DuckLake would refuse it, the
#   launcher applies the statement's own effect, computed on its snapshot (rows it removed or changed,
#   rows it wrote), to the table as it is now: BigQuery's outcome.
ISOLATION: SnapshotIsolation | None = SnapshotIsolation(DML_LIMIT.running)
_current_job = contextvars.ContextVar("oddsbatch_current_job", default=None)
_labels: dict = {}  # job key -> its labels (the test hold below)
_commit_locks: dict[str, threading.Lock] = {}
_commit_locks_lock = threading.Lock()
# Each mutating statement runs this long between its start and its commit (--dml-latency-ms).
DML_LATENCY_SECONDS = 0.0
# Tests hold a statement before each commit attempt: a job labelled oddsbatch-hold=NAME logs
# `dml_hold name=NAME attempt=N` and waits until the file <data-dir>/dml-holds/NAME.N exists.
HOLD_LABEL = "oddsbatch-hold"
HOLD_DIR: Path | None = None


def _constant(node, parameters: dict) -> str | None:
    """The value of a constant operand (a named parameter, a literal, DATE 'x'), else None."""
    if isinstance(node, exp.Parameter):
        return parameters.get(node.name.casefold())
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        node = node.this
    if isinstance(node, exp.Literal):
        return str(node.this)
    return None


def _array_parameter(node, arrays: dict) -> list | None:
    """The values of `IN UNNEST(@array)`'s array parameter, else None."""
    unnest = node.args.get("unnest")
    if not isinstance(unnest, exp.Unnest) or len(unnest.expressions) != 1:
        return None
    (inner,) = unnest.expressions
    return arrays.get(inner.name.casefold()) if isinstance(inner, exp.Parameter) else None


def _partitions(project_id, configuration) -> frozenset | None:
    """The partitions one MERGE / UPDATE / DELETE touches: the values its ON (MERGE) or WHERE
    clause pins the target's partitioning column to with a top-level equality, or the values of
    the array parameter of a top-level `column IN UNNEST(@array)` (a MERGE of several game dates,
    oddsbatch.sql.merge_sql); WHOLE_TABLE when the table is not partitioned by a column or the
    clause does not say."""
    query_config = configuration.query
    tree = sqlglot.parse_one(query_config.query, read="bigquery")
    target = tree.this if isinstance(tree.this, exp.Table) else tree.find(exp.Table)
    dataset = query_config.defaultDataset.datasetId if query_config.defaultDataset else None
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
                  for p in (query_config.queryParameters or [])}
    arrays = {(p.name or "").casefold(): [v.value for v in (p.parameterValue.arrayValues or [])]
              for p in (query_config.queryParameters or []) if p.parameterValue and p.parameterValue.arrayValues}
    alias = target.alias_or_name.casefold()
    values = set()
    listed: list[frozenset] = []
    for part in (condition.flatten() if isinstance(condition, exp.And) else [condition]):
        if isinstance(part, exp.In):
            column = part.this
            found = _array_parameter(part, arrays)
            if (found and isinstance(column, exp.Column) and column.name.casefold() == field.casefold()
                    and (not column.table or column.table.casefold() == alias)):
                listed.append(frozenset(str(v) for v in found))
            continue
        if not isinstance(part, exp.EQ):
            continue
        for column, other in ((part.this, part.expression), (part.expression, part.this)):
            if (isinstance(column, exp.Column) and column.name.casefold() == field.casefold()
                    and (not column.table or column.table.casefold() == alias)):
                value = _constant(other, parameters)
                if value is not None:
                    values.add(value)
    if len(values) == 1:
        return frozenset(values)
    if not values and len(listed) == 1:
        return listed[0]
    return WHOLE_TABLE


def _mutated(statistics) -> bool:
    """Whether a run updated or deleted existing rows (its dmlStats): what makes it conflict."""
    stats = statistics.dmlStats
    if stats is None:
        return False
    counts = stats.dump() if hasattr(stats, "dump") else dict(stats)
    return any(int(counts.get(k) or 0) for k in ("updatedRowCount", "deletedRowCount"))


def _commit_lock(table: str) -> threading.Lock:
    with _commit_locks_lock:
        return _commit_locks.setdefault(table.casefold(), threading.Lock())


def _hold(key, attempt: int) -> None:
    """The run's duration on BigQuery (--dml-latency-ms), and the tests' hold before its commit."""
    if DML_LATENCY_SECONDS:
        time.sleep(DML_LATENCY_SECONDS)  # running on its snapshot, not yet committed
    name = (_labels.get(key) or {}).get(HOLD_LABEL)
    if name and HOLD_DIR is not None:
        print(f"dml_hold name={name} job={key[1]} attempt={attempt}", flush=True)
        gate = HOLD_DIR / f"{name}.{attempt}"
        while not gate.exists():
            time.sleep(0.01)


def _rollback(cur) -> None:
    with contextlib.suppress(Exception):
        cur.execute("ROLLBACK")


def _quoted_target(table: str) -> tuple[str, str]:
    """(DuckDB name of a project:dataset.table, its project)."""
    project, rest = table.split(":", 1)
    dataset, name = rest.split(".", 1)
    return database.quote(project, dataset, name), project


def _effect(cur, table: str) -> tuple[list, list, list]:
    """This transaction's effect on `table` against its snapshot: (row ids it removed or changed, the
    rows it wrote, the column types). DuckLake row ids are stable across versions; rows written here
    get new ones. Values travel as text (DuckDB casts them back exactly: no Python conversion)."""
    target, project = _quoted_target(table)
    (version,) = cur.execute(f"FROM {database.quote(project)}.current_snapshot()").fetchone()[:1]
    rows = f"SELECT rowid, COLUMNS(*)::VARCHAR FROM {target}"
    mine = {r[0]: r[1:] for r in cur.execute(rows).fetchall()}
    types = [t for _, t in cur.execute(f"SELECT column_name, column_type FROM (DESCRIBE {target})").fetchall()]
    with database.cursor() as other:
        before = {r[0]: r[1:] for r in other.execute(f"{rows} AT (VERSION => {int(version)})").fetchall()}
    removed = [rid for rid, row in before.items() if mine.get(rid, None) != row]
    written = [row for rid, row in mine.items() if before.get(rid, None) != row]
    return removed, written, types


APPLY_ROWS_PER_INSERT = 500


def _apply(cur, table: str, removed: list, written: list, types: list) -> None:
    target, _ = _quoted_target(table)
    cur.execute("BEGIN")
    try:
        if removed:
            cur.execute(f"DELETE FROM {target} WHERE rowid IN ({', '.join(str(int(r)) for r in removed)})")
        if written:
            # Many rows per INSERT: DuckLake writes each statement's rows as storage of their own, so
            # one INSERT per row (executemany) took minutes for a props partition and jammed the table.
            marks = "(" + ", ".join(f"CAST(? AS {t})" for t in types) + ")"
            for start in range(0, len(written), APPLY_ROWS_PER_INSERT):
                chunk = written[start:start + APPLY_ROWS_PER_INSERT]
                cur.execute(f"INSERT INTO {target} VALUES {', '.join([marks] * len(chunk))}",
                            [value for row in chunk for value in row])
        cur.execute("COMMIT")
    except BaseException:
        _rollback(cur)
        raise


def _commit(cur, key, table: str, mutated: bool) -> None:
    """COMMIT the run's transaction; when DuckLake would refuse it (another commit overlapped it and
    one of the two removed rows), apply its effect to the table as it is now instead."""
    others = ISOLATION.since_snapshot(key)
    if others and (mutated or any(m is not False for _, _, m in others)):
        removed, written, types = _effect(cur, table)
        _rollback(cur)
        _apply(cur, table, removed, written, types)
        print(f"dml_applied_on_current table={table} job={key[1]} removed={len(removed)} written={len(written)}",
              flush=True)
        return
    try:
        cur.execute("COMMIT")
    except duckdb.TransactionException as error:  # a write the launcher does not see (tabledata.insertAll)
        print(f"dml_storage_refused table={table} job={key[1]}", flush=True)
        raise BigQueryError("backendError", f"The emulator's storage refused the commit of a statement an "
                                            f"untracked write overlapped: {str(error)[:200]}") from error


def _query_execute(cur, project_id, job_id, config, dry_run=False, session=None):
    """One mutating statement on BigQuery's terms: a transaction per run, the rule at commit, the
    reruns. Anything else runs as local-bigquery runs it."""
    key = (project_id, job_id)
    if dry_run or session is not None or ISOLATION is None or not ISOLATION.tracks(key):
        return _original_query_execute(cur, project_id, job_id, config, dry_run=dry_run, session=session)
    table = ISOLATION.table(key)
    refused = None
    for attempt in range(1, RERUNS + 2):
        ISOLATION.start(key)
        cur.execute("BEGIN")
        token = _in_transaction.set(True)
        try:
            result = _original_query_execute(cur, project_id, job_id, config, dry_run=dry_run, session=session)
        except BaseException:
            _rollback(cur)
            raise
        finally:
            _in_transaction.reset(token)
        mutated = _mutated(result[0])
        try:
            _hold(key, attempt)
        except BaseException:
            _rollback(cur)
            raise
        with _commit_lock(table):
            refused = ISOLATION.conflict(key, mutated)
            if refused is None:
                try:
                    _commit(cur, key, table, mutated)
                except BaseException:
                    _rollback(cur)
                    raise
                ISOLATION.commit(key, mutated)
                return result
            _rollback(cur)
        print(f"dml_conflict table={table} job={job_id} attempt={attempt} conflicts={ISOLATION.conflicts}",
              flush=True)
    ISOLATION.gave_up()
    error = BigQueryError(CONFLICT_REASON, refused)
    error.location = None  # BigQuery reports the conflict against the table, not a query position
    raise error


@contextlib.contextmanager
def _writing(*table):
    """local-bigquery's per-table write lock; a write of a statement the model does not track (an
    INSERT, a load) is a commit all the same: recorded, so a transaction it overlapped knows."""
    job = _current_job.get()
    name = f"{table[0]}:{table[1]}.{table[2]}" if len(table) == 3 else ""
    if ISOLATION is None or not name or (job is not None and ISOLATION.tracks(job, name)):
        with _original_writing(*table):
            yield
        return
    with _commit_lock(name), _original_writing(*table):
        yield
    ISOLATION.write(name, mutated=None)


query.execute = _query_execute
database.writing = _writing

# -- load jobs from gs:// URIs, read from the local Cloud Storage (see the module doc) -------------
MAX_SOURCE_URIS = 10_000
_load_dir = contextvars.ContextVar("oddsbatch_load_dir", default=None)
_original_load_run = load_job.run
_original_load_paths = load_job.paths


def _check_source_uris(configuration) -> None:
    """jobs.insert of a load job: BigQuery's limits on its source URIs, refused at once (HTTP 400)."""
    load_config = configuration.load
    uris = (load_config.sourceUris or []) if load_config is not None else []
    if len(uris) > MAX_SOURCE_URIS:
        raise BigQueryError("invalid", f"Too many sources provided: {len(uris)}. Limit is {MAX_SOURCE_URIS}.")
    for uri in uris:
        if not uri.startswith("gs://"):
            continue
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if "*" in bucket or name.count("*") > 1:
            raise BigQueryError("invalid", f"Invalid source URI {uri}: a Cloud Storage URI can contain one '*' "
                                           "wildcard character, after the bucket name")


def _storage_endpoint() -> str:
    import os

    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if not host:
        raise BigQueryError("invalid", "a load from gs:// needs the local Cloud Storage: STORAGE_EMULATOR_HOST is not set")
    return (host if "://" in host else f"http://{host}").rstrip("/")


def _storage_get(path: str, query: dict | None = None):
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    url = f"{_storage_endpoint()}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise BigQueryError("backendError", f"local Cloud Storage answered HTTP {error.code} for {path}") from error
    return body if query and query.get("alt") == "media" else json.loads(body)


def _object_names(bucket: str, pattern: str) -> list[str]:
    """The bucket's object names matching one '*' wildcard (any characters, '/' included)."""
    import re
    import urllib.parse

    head, _, tail = pattern.partition("*")
    matcher = re.compile(re.escape(head) + ".*" + re.escape(tail), re.DOTALL)
    names, token = [], None
    while True:
        query = {"prefix": head, **({"pageToken": token} if token else {})}
        page = _storage_get(f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o", query) or {}
        names += [item["name"] for item in page.get("items", []) if matcher.fullmatch(item["name"])]
        token = page.get("nextPageToken")
        if not token:
            return sorted(names)


def _load_paths(cur, uri: str) -> list[str]:
    """Local files holding the objects a gs:// URI names, downloaded for this job."""
    import urllib.parse

    directory = _load_dir.get()
    if directory is None or not uri.startswith("gs://"):
        return _original_load_paths(cur, uri)
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if "#" in name:
        raise BigQueryError("invalid", f"Invalid source URI {uri}: BigQuery does not load Cloud Storage object "
                                       "versions (a generation number in the URI)")
    names = _object_names(bucket, name) if "*" in name else [name]
    paths = []
    for object_name in names:
        data = _storage_get(f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                            f"{urllib.parse.quote(object_name, safe='')}", {"alt": "media"})
        if data is None:
            break
        path = Path(directory) / f"{len(list(Path(directory).iterdir()))}.source"
        path.write_bytes(data)
        paths.append(str(path))
    if not names or len(paths) < len(names):
        raise BigQueryError("notFound", f"Not found: URI {uri}")
    return paths


def _load_run(cur, config, upload):
    import tempfile

    if upload or not any(u.startswith("gs://") for u in (config.sourceUris or [])):
        return _original_load_run(cur, config, upload)
    with tempfile.TemporaryDirectory(prefix="oddsbatch-load-") as directory:
        token = _load_dir.set(directory)
        try:
            return _original_load_run(cur, config, upload)
        finally:
            _load_dir.reset(token)


load_job.paths = _load_paths
load_job.run = _load_run
runner.HANDLERS["load"] = _load_run


def _limits_from_argv(argv: list[str]) -> list[str]:
    """Take --dml-running / --dml-queued out of argv (local-bigquery's CLI does not know them)."""
    global DML_LIMIT, ISOLATION, DML_LATENCY_SECONDS, HOLD_DIR
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=None)  # local-bigquery's own: kept in argv
    parser.add_argument("--dml-running", type=int, default=DML_LIMIT.running)
    parser.add_argument("--dml-queued", type=int, default=DML_LIMIT.queued)
    parser.add_argument("--dml-conflicts", choices=("on", "off"), default="on")
    parser.add_argument("--dml-latency-ms", type=int, default=0)
    known, _ = parser.parse_known_args(argv)
    rest = _without(argv, ("--dml-running", "--dml-queued", "--dml-conflicts", "--dml-latency-ms"))
    if known.dml_latency_ms < 0:
        parser.error(f"--dml-latency-ms must be >= 0, got {known.dml_latency_ms}")
    if known.dml_latency_ms and known.dml_conflicts == "off":  # the hold lives in the isolation model's path
        parser.error("--dml-latency-ms needs --dml-conflicts on")
    DML_LATENCY_SECONDS = known.dml_latency_ms / 1000
    DML_LIMIT = DmlQueueLimit(known.dml_running, known.dml_queued)
    ISOLATION = SnapshotIsolation(DML_LIMIT.running) if known.dml_conflicts == "on" else None
    if known.data_dir:
        HOLD_DIR = Path(known.data_dir) / "dml-holds"
        HOLD_DIR.mkdir(parents=True, exist_ok=True)
    print(f"dml_limit running={DML_LIMIT.running} queued={DML_LIMIT.queued} conflicts={known.dml_conflicts} "
          f"latency_ms={known.dml_latency_ms}", flush=True)
    return rest


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv without the launcher's own options (and their values)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in options)):
            rest.append(arg)
    return rest


if __name__ == "__main__":
    sys.argv[1:] = _limits_from_argv(sys.argv[1:])
    sys.argv[0] = "local-bigquery"
    sys.exit(main())
