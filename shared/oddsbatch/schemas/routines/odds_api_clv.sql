-- Closing line value of one bet, for game dates in [start_date, end_date]: the bet (game,
-- book or NULL for any book, market, participant or NULL, side, point or NULL, decimal price,
-- time placed) against each matching close of odds_api_closing_lines (one row per book).
--   clv_price = bet_price_decimal / close_price_decimal - 1;
--   clv_no_vig = bet_price_decimal / (1 / close_no_vig_probability) - 1 (against the fair close);
--   clv_points: Over close_point - bet_point; Under and team sides bet_point - close_point
--     (positive: the bet got the better number), NULL without points;
--   is_same_point: the bet's point is the close's (price CLV compares like with like only then);
--   is_bet_pre_tip and bet_minutes_before_tipoff tell an in-game bet from a pre-game one.
-- Argument names differ from every column name: in a table function body a column wins over a
-- parameter of the same name. https://cloud.google.com/bigquery/docs/reference/standard-sql/table-functions
SELECT c.*,
       bet_point, bet_price_decimal, bet_placed_at,
       TIMESTAMP_DIFF(c.commence_time, bet_placed_at, MINUTE) AS bet_minutes_before_tipoff,
       COALESCE(bet_placed_at < c.commence_time, FALSE) AS is_bet_pre_tip,
       COALESCE(bet_point = c.close_point, bet_point IS NULL AND c.close_point IS NULL) AS is_same_point,
       bet_price_decimal / c.close_price_decimal - 1 AS clv_price,
       bet_price_decimal * c.close_no_vig_probability - 1 AS clv_no_vig,
       CASE WHEN c.side = 'Over' THEN c.close_point - bet_point ELSE bet_point - c.close_point END AS clv_points
FROM `${project}.${dataset}.odds_api_closing_lines`(start_date, end_date, closing_window_minutes) AS c
WHERE c.game_id = bet_game_id
  AND (bet_bookmaker_key IS NULL OR c.bookmaker_key = bet_bookmaker_key)
  AND c.market_key = bet_market_key
  AND (c.participant = bet_participant OR (c.participant IS NULL AND bet_participant IS NULL))
  AND c.side = bet_side
