-- The view `${legacy_dataset}.odds_api_game_lines` (schemas/legacy_views/, the old pipeline's table
-- `nba_raw.odds_api_game_lines`; our table keeps that name in our dataset) for game dates in
-- [start_date, end_date]: the date-range form, whose range is the required partition filter.
SELECT *
FROM `${project}.${legacy_dataset}.odds_api_game_lines`
WHERE game_date BETWEEN start_date AND end_date
