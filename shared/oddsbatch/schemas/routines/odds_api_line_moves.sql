-- Line moves, for game dates in [start_date, end_date]: one row per change of a book's main
-- line (point) or price of a side between that book's consecutive snapshots of the side
-- (odds_api_lines, main line, markets that are not alternates, in-game snapshots included
-- and flagged by is_pre_tip).
--   from_* / to_*, point_delta, price_delta (decimal), minutes_before_tipoff of the new quote;
--   direction: +1 when the market moved toward the side (its point got worse for a bettor on
--   it: Over up, Under / team down; without a point move, its implied probability rose),
--   -1 the other way;
--   steam: at least steam_books distinct books (this one included) moved the same side the
--   same direction within steam_minutes of this move (either side in time). Table function
--   arguments have no defaults: callers pass them (3 books within 10 minutes is the usual).
-- The distinct-book count is a self-join grouped by the move's exact key (BigQuery allows no
-- DISTINCT in a window with a frame, and no FLOAT64 in GROUP BY keys).
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#groupable_data_types
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/window-functions
WITH main_quotes AS (
  SELECT *,
         LAG(point) OVER history AS from_point,
         LAG(price_decimal) OVER history AS from_price_decimal,
         LAG(price_american) OVER history AS from_price_american,
         LAG(snapshot_timestamp) OVER history AS from_snapshot_timestamp
  FROM `${project}.${dataset}.odds_api_lines`(start_date, end_date)
  WHERE is_main_line AND market_key NOT LIKE '%alternate%'
  WINDOW history AS (
    PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, side
    ORDER BY snapshot_timestamp)
),
moves AS (
  SELECT game_date, game_id, commence_time, bookmaker_key, market_key, participant, side,
         from_snapshot_timestamp, snapshot_timestamp AS to_snapshot_timestamp,
         from_point, point AS to_point, point - from_point AS point_delta,
         from_price_decimal, price_decimal AS to_price_decimal, price_decimal - from_price_decimal AS price_delta,
         from_price_american, price_american AS to_price_american,
         minutes_before_tipoff, is_pre_tip,
         CAST(CASE
           WHEN point <> from_point AND side = 'Over' THEN SIGN(point - from_point)
           WHEN point <> from_point THEN -SIGN(point - from_point)
           ELSE SIGN(from_price_decimal - price_decimal)
         END AS INT64) AS direction
  FROM main_quotes
  WHERE from_snapshot_timestamp IS NOT NULL
    AND (price_decimal <> from_price_decimal
         OR point <> from_point
         OR (point IS NULL) <> (from_point IS NULL))
),
steam_books_moving AS (
  SELECT m.game_date, m.game_id, m.bookmaker_key, m.market_key, m.participant, m.side, m.to_snapshot_timestamp,
         COUNT(DISTINCT o.bookmaker_key) AS books_moving
  FROM moves AS m
  JOIN moves AS o
    ON o.game_date = m.game_date AND o.game_id = m.game_id AND o.market_key = m.market_key
   AND (o.participant = m.participant OR (o.participant IS NULL AND m.participant IS NULL))
   AND o.side = m.side AND o.direction = m.direction
   AND ABS(TIMESTAMP_DIFF(o.to_snapshot_timestamp, m.to_snapshot_timestamp, SECOND)) <= steam_minutes * 60
  GROUP BY m.game_date, m.game_id, m.bookmaker_key, m.market_key, m.participant, m.side, m.to_snapshot_timestamp
)
SELECT m.*, c.books_moving, c.books_moving >= steam_books AS steam
FROM moves AS m
JOIN steam_books_moving AS c
  ON c.game_date = m.game_date AND c.game_id = m.game_id AND c.bookmaker_key = m.bookmaker_key
 AND c.market_key = m.market_key
 AND (c.participant = m.participant OR (c.participant IS NULL AND m.participant IS NULL))
 AND c.side = m.side AND c.to_snapshot_timestamp = m.to_snapshot_timestamp
