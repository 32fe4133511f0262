-- Opening and closing lines, for game dates in [start_date, end_date]: one row per
-- (game_date, game_id, bookmaker_key, market_key, participant, side) of odds_api_lines, for
-- markets that are not alternates (market keys containing 'alternate': player_*_alternate,
-- alternate_spreads, alternate_totals), taken from the book's main line at each snapshot.
-- Only pre-tip snapshots count (snapshot strictly before commence_time): in-game odds never
-- reach an open or a close.
--   open_*:  the first pre-tip snapshot of the side on the main line;
--   close_*: the last one (a book that stopped quoting early closes where it stopped);
--   is_true_close: the close lies within closing_window_minutes of tip-off (a table function
--     argument cannot have a default: callers pass it, 15 is the documented convention).
-- close_no_vig_probability is multiplicative, over the main line's sides at the close.
-- Windows partition by the side's key, game_date first.
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/navigation_functions
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/query-syntax#qualify_clause
WITH pre_tip AS (
  SELECT *
  FROM `${project}.${dataset}.odds_api_lines`(start_date, end_date)
  WHERE is_pre_tip AND is_main_line AND market_key NOT LIKE '%alternate%'
),
ordered AS (
  SELECT *,
         FIRST_VALUE(point) OVER side_history AS open_point,
         FIRST_VALUE(price_decimal) OVER side_history AS open_price_decimal,
         FIRST_VALUE(price_american) OVER side_history AS open_price_american,
         FIRST_VALUE(snapshot_timestamp) OVER side_history AS open_snapshot_timestamp,
         FIRST_VALUE(minutes_before_tipoff) OVER side_history AS open_minutes_before_tipoff,
         COUNT(*) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, side) AS pre_tip_snapshots
  FROM pre_tip
  WINDOW side_history AS (
    PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, side
    ORDER BY snapshot_timestamp
    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT game_date, game_id, commence_time, home_team, away_team, bookmaker_key, market_key, participant, side,
       open_point, open_price_decimal, open_price_american, open_snapshot_timestamp, open_minutes_before_tipoff,
       point AS close_point,
       price_decimal AS close_price_decimal,
       price_american AS close_price_american,
       snapshot_timestamp AS close_snapshot_timestamp,
       minutes_before_tipoff AS close_minutes_before_tipoff,
       TIMESTAMP_DIFF(commence_time, snapshot_timestamp, SECOND) <= closing_window_minutes * 60 AS is_true_close,
       implied_probability AS close_implied_probability,
       no_vig_probability AS close_no_vig_probability,
       pre_tip_snapshots
FROM ordered
WHERE TRUE  -- BigQuery takes QUALIFY only with a WHERE, GROUP BY or HAVING clause
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, side
  ORDER BY snapshot_timestamp DESC
) = 1
