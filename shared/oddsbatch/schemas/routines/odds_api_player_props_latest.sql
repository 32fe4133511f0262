-- The latest line per key of odds_api_player_props, for game dates in [start_date, end_date]:
-- the natural key minus the snapshot time, newest snapshot first, ties broken by the newest
-- (generation, object) as the MERGE does. A table function, not a view: its date range is the
-- base table's required partition filter, and game_date leads the window.
SELECT *
FROM `${project}.${dataset}.odds_api_player_props`
WHERE game_date BETWEEN start_date AND end_date
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY game_date, game_id, bookmaker_key, market_key, player_name, line
  ORDER BY snapshot_timestamp DESC, source_generation DESC, source_object DESC
) = 1
