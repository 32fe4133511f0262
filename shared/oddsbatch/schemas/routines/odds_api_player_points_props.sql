-- The view `${legacy_dataset}.odds_api_player_points_props` (schemas/legacy_views/, the old
-- pipeline's table of that name) for game dates in [start_date, end_date]: the date-range form,
-- whose range is the required partition filter.
SELECT *
FROM `${project}.${legacy_dataset}.odds_api_player_points_props`
WHERE game_date BETWEEN start_date AND end_date
