-- Across books, for game dates in [start_date, end_date]: one row per (game_date, game_id,
-- snapshot_timestamp, market_key, participant, side) of odds_api_lines (the books of one
-- snapshot file share its time). Over each book's main line of the side:
--   books: how many books quote it; median_point and median_no_vig_probability (multiplicative),
--   PERCENTILE_CONT(x, 0.5), per side, so a spread's two sides never cancel; min_point,
--   max_point and point_range (max - min): the spread of the books' lines;
--   consensus_point: the point most books quote (ties: the lowest).
-- Over every quote of the side (any line of the market):
--   best_price_decimal / best_price_bookmaker_key / best_price_point: the highest decimal
--   price at any point; best_price_at_consensus_* : the highest at consensus_point. Ties go
--   to the first bookmaker key in alphabetical order.
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/navigation_functions#percentile_cont
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#array_agg
-- (the best quote at the consensus point sorts the quotes at it first, then checks the flag:
-- no NULL array elements, which BigQuery rejects, and no IGNORE NULLS, which the emulator
-- applies after LIMIT)
WITH quotes AS (
  SELECT *,
         COUNTIF(is_main_line) OVER (
           PARTITION BY game_date, game_id, snapshot_timestamp, market_key, participant, side, point) AS books_at_point
  FROM `${project}.${dataset}.odds_api_lines`(start_date, end_date)
),
ranked AS (
  SELECT *,
         FIRST_VALUE(IF(is_main_line, point, NULL)) OVER (
           PARTITION BY game_date, game_id, snapshot_timestamp, market_key, participant, side
           ORDER BY books_at_point DESC, point
           ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS consensus_point,
         PERCENTILE_CONT(IF(is_main_line, point, NULL), 0.5) OVER (
           PARTITION BY game_date, game_id, snapshot_timestamp, market_key, participant, side) AS median_point,
         PERCENTILE_CONT(IF(is_main_line, no_vig_probability, NULL), 0.5) OVER (
           PARTITION BY game_date, game_id, snapshot_timestamp, market_key, participant, side) AS median_no_vig_probability
  FROM quotes
),
flagged AS (
  SELECT *, COALESCE(point = consensus_point, point IS NULL AND consensus_point IS NULL) AS at_consensus
  FROM ranked
)
SELECT game_date, game_id, snapshot_timestamp, market_key, participant, side,
       ANY_VALUE(commence_time) AS commence_time,
       ANY_VALUE(minutes_before_tipoff) AS minutes_before_tipoff,
       LOGICAL_AND(is_pre_tip) AS is_pre_tip,
       COUNTIF(is_main_line) AS books,
       ANY_VALUE(median_point) AS median_point,
       ANY_VALUE(median_no_vig_probability) AS median_no_vig_probability,
       MIN(IF(is_main_line, point, NULL)) AS min_point,
       MAX(IF(is_main_line, point, NULL)) AS max_point,
       MAX(IF(is_main_line, point, NULL)) - MIN(IF(is_main_line, point, NULL)) AS point_range,
       ANY_VALUE(consensus_point) AS consensus_point,
       ARRAY_AGG(STRUCT(price_decimal AS price_decimal, bookmaker_key AS bookmaker_key, point AS point) ORDER BY price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].price_decimal AS best_price_decimal,
       ARRAY_AGG(STRUCT(price_decimal AS price_decimal, bookmaker_key AS bookmaker_key, point AS point) ORDER BY price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].bookmaker_key AS best_price_bookmaker_key,
       ARRAY_AGG(STRUCT(price_decimal AS price_decimal, bookmaker_key AS bookmaker_key, point AS point) ORDER BY price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].point AS best_price_point,
       IF(ARRAY_AGG(STRUCT(at_consensus AS at_consensus, price_decimal AS price_decimal, bookmaker_key AS bookmaker_key)
                    ORDER BY at_consensus DESC, price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].at_consensus,
          ARRAY_AGG(STRUCT(at_consensus AS at_consensus, price_decimal AS price_decimal, bookmaker_key AS bookmaker_key)
                    ORDER BY at_consensus DESC, price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].price_decimal,
          NULL) AS best_price_at_consensus_decimal,
       IF(ARRAY_AGG(STRUCT(at_consensus AS at_consensus, price_decimal AS price_decimal, bookmaker_key AS bookmaker_key)
                    ORDER BY at_consensus DESC, price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].at_consensus,
          ARRAY_AGG(STRUCT(at_consensus AS at_consensus, price_decimal AS price_decimal, bookmaker_key AS bookmaker_key)
                    ORDER BY at_consensus DESC, price_decimal DESC, bookmaker_key LIMIT 1)[OFFSET(0)].bookmaker_key,
          NULL) AS best_price_at_consensus_bookmaker_key
FROM flagged
GROUP BY game_date, game_id, snapshot_timestamp, market_key, participant, side
