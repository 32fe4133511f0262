-- The view `${legacy_dataset}.odds_api_game_lines_preferred`: the old pipeline's view of that name
-- (najicham/nba-stats-scraper, schemas/bigquery/raw/odds_game_lines_views.sql) over the view
-- `${legacy_dataset}.odds_api_game_lines`: per (game, game_date, market, outcome) the row of the
-- preferred book (draftkings, then fanduel, then any other), its latest snapshot; the old view's
-- columns (the game-lines columns but data_source and data_hash). Ties among other books are broken
-- by book key, so the answer is deterministic. game_date leads the window's PARTITION BY, so a
-- caller's game_date filter reaches the base table's required partition filter.
SELECT snapshot_timestamp, previous_snapshot_timestamp, next_snapshot_timestamp, game_id, sport_key, sport_title,
       commence_time, game_date, home_team, away_team, home_team_abbr, away_team_abbr, bookmaker_key,
       bookmaker_title, bookmaker_last_update, market_key, market_last_update, outcome_name, outcome_price,
       outcome_point, source_file_path, created_at, processed_at
FROM `${project}.${legacy_dataset}.odds_api_game_lines`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY game_date, game_id, market_key, outcome_name
  ORDER BY CASE bookmaker_key WHEN 'draftkings' THEN 1 WHEN 'fanduel' THEN 2 ELSE 99 END,
           snapshot_timestamp DESC, bookmaker_key) = 1
