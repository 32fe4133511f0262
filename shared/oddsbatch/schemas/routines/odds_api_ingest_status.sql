-- Readiness per (endpoint, game_date) for game dates in [start_date, end_date], from the
-- append-only odds_api_ingest_log (one streamed row per finished batch round). A streamed row
-- may arrive twice (insertId deduplication is best-effort): one row per run id is kept first.
-- files_* count object generations the rounds finished; pending is what the latest round left
-- queued; complete_as_of is that latest round's finish time when it left nothing queued, else
-- NULL. `oddsbatch ready` is the stricter check (the bucket against the tables and the ledger).
WITH rounds AS (
  SELECT *
  FROM `${project}.${dataset}.odds_api_ingest_log`
  WHERE game_date BETWEEN start_date AND end_date
  QUALIFY ROW_NUMBER() OVER (PARTITION BY game_date, endpoint, run_id ORDER BY finished_at) = 1
),
latest AS (
  SELECT game_date, endpoint, finished_at, pending_after
  FROM rounds
  WHERE TRUE  -- GoogleSQL takes QUALIFY only with WHERE, GROUP BY or HAVING
  QUALIFY ROW_NUMBER() OVER (PARTITION BY game_date, endpoint ORDER BY finished_at DESC, run_id DESC) = 1
),
totals AS (
  SELECT
    game_date,
    endpoint,
    COUNT(*) AS rounds,
    SUM(files_merged) AS files_merged,
    SUM(quarantined) AS files_quarantined,
    SUM(gone) AS files_gone,
    SUM(rows_merged) AS rows_merged,
    MAX(last_snapshot) AS last_snapshot,
    MIN(finished_at) AS first_round_at
  FROM rounds
  GROUP BY game_date, endpoint
)
SELECT
  t.endpoint,
  t.game_date,
  t.rounds,
  t.files_merged + t.files_quarantined + t.files_gone + COALESCE(l.pending_after, 0) AS files_seen,
  t.files_merged,
  t.files_quarantined,
  t.files_gone,
  l.pending_after AS files_pending,
  t.rows_merged,
  t.last_snapshot,
  t.first_round_at,
  l.finished_at AS last_round_at,
  IF(l.pending_after = 0, l.finished_at, NULL) AS complete_as_of
FROM totals AS t
JOIN latest AS l USING (game_date, endpoint)
