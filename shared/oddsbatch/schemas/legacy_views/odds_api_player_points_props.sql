-- The view `${legacy_dataset}.odds_api_player_points_props`: the old pipeline's
-- `nba_raw.odds_api_player_points_props` (najicham/nba-stats-scraper,
-- schemas/bigquery/raw/odds_api_props_tables.sql), its name, columns, order and types, over
-- odds_api_player_props, so a query written for the old table runs unchanged (README "Coming from
-- the old pipeline"). A query on it needs a game_date filter (our table requires one; the old
-- table did not).
-- As the old table: market player_points only, one row per (game, player, bookmaker, line,
-- snapshot) with Over and Under side by side (our table pivots them the same way), points_line
-- FLOAT64 (a NUMERIC line converts exactly). game_id is the old `YYYYMMDD_AWAY_HOME` made from
-- the game date and the teams' abbreviations (NULL when an abbreviation is unknown); the Odds
-- API event id is odds_api_event_id. snapshot_tag is the object name's `snap-HHMM`,
-- capture_timestamp the object name's `YYYYMMDD_HHMMSS` (when the scraper ran), data_source
-- 'historical' for the -history prefixes else 'current', processed_at when the row was
-- ingested; data_hash NULL (oddsbatch deduplicates by its natural key).
SELECT CONCAT(FORMAT_DATE('%Y%m%d', game_date), '_', away_team_abbr, '_', home_team_abbr) AS game_id,
       game_id AS odds_api_event_id,
       game_date,
       commence_time AS game_start_time,
       home_team_abbr,
       away_team_abbr,
       snapshot_timestamp,
       REGEXP_EXTRACT(source_object, r'(snap-[0-9]{4})') AS snapshot_tag,
       SAFE.PARSE_TIMESTAMP('%Y%m%d_%H%M%S', REGEXP_EXTRACT(source_object, r'/([0-9]{8}_[0-9]{6})-snap-[0-9]{4}')) AS capture_timestamp,
       minutes_before_tipoff,
       bookmaker_key AS bookmaker,
       player_name,
       player_lookup,
       CAST(line AS FLOAT64) AS points_line,
       over_price_decimal AS over_price,
       over_price_american,
       under_price_decimal AS under_price,
       under_price_american,
       bookmaker_last_update,
       source_object AS source_file_path,
       IF(STRPOS(source_object, '-history/') > 0, 'historical', 'current') AS data_source,
       CAST(NULL AS STRING) AS data_hash,
       ingested_at AS processed_at
FROM `${project}.${dataset}.odds_api_player_props`
WHERE market_key = 'player_points'
  AND line IS NOT NULL
