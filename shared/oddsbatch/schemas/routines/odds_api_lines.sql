-- Every quote of both base tables as one long table, for game dates in [start_date, end_date]:
-- one row per (game_date, game_id, bookmaker_key, market_key, participant, side, point,
-- snapshot_timestamp). Props are unpivoted back into their Over/Under/Yes/No sides (a side
-- the book did not quote is no row); participant is the player for props, the described
-- team for team totals (outcome_description), NULL otherwise; side is the outcome name.
--
-- line_point is the one number both sides of a line share: a spread's away side quotes the
-- home point negated (home -3.5 / away +3.5 is the line -3.5), every other market's sides
-- quote the same point. A line is (snapshot, book, market, participant, line_point).
-- is_main_line: per (snapshot, book, market, participant), the line whose two sides' decimal
-- prices are closest (ties: the lowest line_point); only lines quoted on at least two sides
-- compete. A market without points (h2h, yes/no) has one line: always main.
-- no_vig_probability is the multiplicative one (implied / sum of the line's implied), NULL for
-- a line quoted on one side only; odds_api_market_snapshots has every method.
-- is_pre_tip: the snapshot is strictly before commence_time; later rows are in-game odds.
-- Both base tables require a partition filter: each read filters game_date itself, and
-- game_date leads every window. https://cloud.google.com/bigquery/docs/reference/standard-sql/table-functions
WITH quotes AS (
  SELECT game_date, game_id, commence_time, home_team, away_team, snapshot_timestamp, minutes_before_tipoff,
         bookmaker_key, market_key, outcome_description AS participant, outcome_name AS side,
         outcome_point AS point, price_decimal, price_american, 'odds_api_game_lines' AS source_table
  FROM `${project}.${dataset}.odds_api_game_lines`
  WHERE game_date BETWEEN start_date AND end_date AND price_decimal IS NOT NULL
  UNION ALL
  SELECT game_date, game_id, commence_time, home_team, away_team, snapshot_timestamp, minutes_before_tipoff,
         bookmaker_key, market_key, player_name, 'Over', line, over_price_decimal, over_price_american,
         'odds_api_player_props'
  FROM `${project}.${dataset}.odds_api_player_props`
  WHERE game_date BETWEEN start_date AND end_date AND over_price_decimal IS NOT NULL
  UNION ALL
  SELECT game_date, game_id, commence_time, home_team, away_team, snapshot_timestamp, minutes_before_tipoff,
         bookmaker_key, market_key, player_name, 'Under', line, under_price_decimal, under_price_american,
         'odds_api_player_props'
  FROM `${project}.${dataset}.odds_api_player_props`
  WHERE game_date BETWEEN start_date AND end_date AND under_price_decimal IS NOT NULL
  UNION ALL
  SELECT game_date, game_id, commence_time, home_team, away_team, snapshot_timestamp, minutes_before_tipoff,
         bookmaker_key, market_key, player_name, 'Yes', line, yes_price_decimal, yes_price_american,
         'odds_api_player_props'
  FROM `${project}.${dataset}.odds_api_player_props`
  WHERE game_date BETWEEN start_date AND end_date AND yes_price_decimal IS NOT NULL
  UNION ALL
  SELECT game_date, game_id, commence_time, home_team, away_team, snapshot_timestamp, minutes_before_tipoff,
         bookmaker_key, market_key, player_name, 'No', line, no_price_decimal, no_price_american,
         'odds_api_player_props'
  FROM `${project}.${dataset}.odds_api_player_props`
  WHERE game_date BETWEEN start_date AND end_date AND no_price_decimal IS NOT NULL
),
paired AS (
  SELECT *, IF(market_key LIKE '%spreads%' AND side = away_team, -point, point) AS line_point
  FROM quotes
),
per_line AS (
  SELECT *,
         COUNT(*) OVER line AS line_sides,
         SUM(1 / price_decimal) OVER line AS line_implied_sum,
         MAX(price_decimal) OVER line - MIN(price_decimal) OVER line AS line_price_gap
  FROM paired
  WINDOW line AS (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)
),
main AS (
  SELECT *,
         FIRST_VALUE(line_point) OVER (
           PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp
           ORDER BY IF(line_sides >= 2, 0, 1), line_price_gap, line_point
           ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS main_line_point
  FROM per_line
)
SELECT game_date, game_id, commence_time, home_team, away_team, bookmaker_key, market_key,
       participant, side, point, line_point, snapshot_timestamp, price_decimal, price_american,
       1 / price_decimal AS implied_probability,
       minutes_before_tipoff,
       COALESCE(snapshot_timestamp < commence_time, FALSE) AS is_pre_tip,
       (line_point IS NULL AND main_line_point IS NULL)
         OR (line_sides >= 2 AND line_point = main_line_point) AS is_main_line,
       line_sides,
       IF(line_sides >= 2, line_implied_sum - 1, NULL) AS line_margin,
       IF(line_sides >= 2, (1 / price_decimal) / line_implied_sum, NULL) AS no_vig_probability,
       source_table
FROM main
