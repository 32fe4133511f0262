-- The view `${legacy_dataset}.odds_api_game_lines`: the old pipeline's `nba_raw.odds_api_game_lines`
-- (najicham/nba-stats-scraper, schemas/bigquery/raw/odds_game_lines_tables.sql), its name, columns,
-- order and types, over odds_api_game_lines, so a query written for the old table runs unchanged
-- (README "Coming from the old pipeline"). Like the old table, it needs a game_date filter: BigQuery
-- applies the base table's require_partition_filter to every query on the view.
-- One row per outcome per (game, book, market, snapshot), as before: lines with an outcome
-- description (team totals, which the old table never held) are left out, so no two rows share
-- the old table's key. outcome_price is the decimal price; outcome_point back to FLOAT64 (a
-- NUMERIC line converts exactly: at most 9 decimals).
-- data_source as the old loader set it from the object: 'historical' for the -history prefixes,
-- else 'current'. created_at and processed_at: when the row was ingested (or imported);
-- data_hash: NULL (oddsbatch deduplicates by its natural key, not by a hash).
SELECT snapshot_timestamp,
       previous_snapshot_timestamp,
       next_snapshot_timestamp,
       game_id,
       sport_key,
       sport_title,
       commence_time,
       game_date,
       home_team,
       away_team,
       home_team_abbr,
       away_team_abbr,
       bookmaker_key,
       bookmaker_title,
       bookmaker_last_update,
       market_key,
       market_last_update,
       outcome_name,
       price_decimal AS outcome_price,
       CAST(outcome_point AS FLOAT64) AS outcome_point,
       source_object AS source_file_path,
       IF(STRPOS(source_object, '-history/') > 0, 'historical', 'current') AS data_source,
       ingested_at AS created_at,
       CAST(NULL AS STRING) AS data_hash,
       ingested_at AS processed_at
FROM `${project}.${dataset}.odds_api_game_lines`
WHERE outcome_description IS NULL
