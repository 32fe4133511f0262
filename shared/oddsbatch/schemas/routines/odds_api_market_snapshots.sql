-- The betting math of every line, for game dates in [start_date, end_date]: one row per
-- (snapshot, book, market, participant, point) from odds_api_lines, its sides side by side
-- (side_1: Over / Yes / the home team, side_2: Under / No / the away team; a market with more
-- outcomes lists every one in `sides`, ordered the same way, then by name). point is the
-- line's line_point (a spread's home point).
--
-- p_i = 1 / decimal, s = sum(p), n outcomes, margin = s - 1. No-vig probabilities, NULL with
-- fewer than two sides quoted; each method as penaltyblog's `implied` module defines it
-- (martineastwood/penaltyblog, penaltyblog/implied/implied.py), for any n:
--   multiplicative  p_i / s
--   additive        p_i - (s - 1) / n
--   power           p_i ^ k, k such that sum = 1
--   Shin            (sqrt(z^2 + 4 (1 - z) p_i^2 / s) - z) / (2 (1 - z)), z such that sum = 1
--                   (Shin 1993, "Measuring the incidence of insider trading in a market for
--                   state-contingent claims", Economic Journal 103; the closed form of p_i
--                   given z as in Jullien & Salanie 1994 and penaltyblog). For n = 2 it equals
--                   additive. z is the insiders' share in [0, 1) when s >= 1; an underround
--                   market (s < 1) solves with z in [-1, 0), which keeps Shin = additive at n = 2.
--   differential margin weighting (Buchdahl, "The Wisdom of the Crowd", football-data.co.uk):
--                   fair decimal = n d_i / (n - margin d_i), probability its inverse
--                   (algebraically p_i - margin / n: the additive probabilities)
--   odds ratio      (Cheung 2015, as discussed by Buchdahl) p_i / (c + p_i - c p_i), c such
--                   that sum = 1
--   logarithmic     sigmoid(logit(p_i) - c), c such that sum = 1 (penaltyblog's
--                   `_logarithmic`). The same family as odds ratio: logit of the odds-ratio
--                   probability is logit(p_i) - ln(c_or), so logarithmic_c = ln(odds_ratio_c)
--                   and both come from one root.
-- Fair decimal price = 1 / fair probability.
--
-- The three roots (power k, Shin z, and L = logarithmic c = ln(odds ratio c)) are found by
-- ONE bisection, the recursive CTE `solve`: each iteration halves every market's three
-- brackets, each a bracket of a decreasing function of its parameter:
--   k in [ln n / -ln p_min, ln n / -ln p_max]   (n p_min^k >= 1 at the left end, n p_max^k <= 1 at the right)
--   z in [-1, 1)                                 (every term >= 1/2 at z = -1; sum -> sum(p^2) / s < 1 as z -> 1)
--   L in [logit p_min + ln(n - 1), logit p_max + ln(n - 1)]  (every term >= 1/n at the left end, <= 1/n at the right)
-- until every bracket is narrower than 1e-12 (about 45 iterations; at most 100, well under
-- BigQuery's cap on a recursive CTE's iterations), or at once for a line that cannot be solved
-- (one side, or a price <= 1). The root is the bracket's midpoint.
-- https://cloud.google.com/bigquery/docs/recursive-ctes
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/query-syntax#recursive_cte
-- Every window partitions by the line, game_date first.
-- https://cloud.google.com/bigquery/docs/reference/standard-sql/window-functions
WITH RECURSIVE quoted AS (
  SELECT *,
         CASE WHEN side IN ('Over', 'Yes') OR side = home_team THEN 0
              WHEN side IN ('Under', 'No') OR side = away_team THEN 1
              ELSE 2 END AS side_rank
  FROM `${project}.${dataset}.odds_api_lines`(start_date, end_date)
),
base AS (
  SELECT *,
         ROW_NUMBER() OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point ORDER BY side_rank, side) AS side_position
  FROM quoted
),
markets AS (
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point,
         ANY_VALUE(commence_time) AS commence_time,
         ANY_VALUE(home_team) AS home_team,
         ANY_VALUE(away_team) AS away_team,
         ANY_VALUE(minutes_before_tipoff) AS minutes_before_tipoff,
         LOGICAL_AND(is_pre_tip) AS is_pre_tip,
         LOGICAL_AND(is_main_line) AS is_main_line,
         COUNT(*) AS n,
         SUM(implied_probability) AS s,
         MIN(implied_probability) AS p_min,
         MAX(implied_probability) AS p_max,
         ARRAY_AGG(STRUCT(side AS side, point AS point, price_decimal AS price_decimal,
                          price_american AS price_american, implied_probability AS implied_probability)
                   ORDER BY side_position) AS quotes
  FROM base
  GROUP BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point
),
brackets AS (
  SELECT *, NOT solvable AS done
  FROM (
    SELECT *,
           IF(solvable, LN(n) / -LN(p_min), NULL) AS k_lo,
           IF(solvable, LN(n) / -LN(p_max), NULL) AS k_hi,
           IF(solvable, CAST(-1 AS FLOAT64), NULL) AS z_lo,
           IF(solvable, CAST(1 AS FLOAT64), NULL) AS z_hi,
           IF(solvable, LN(p_min / (1 - p_min)) + LN(n - 1), NULL) AS l_lo,
           IF(solvable, LN(p_max / (1 - p_max)) + LN(n - 1), NULL) AS l_hi
    FROM (SELECT *, n >= 2 AND p_min > 0 AND p_max < 1 AS solvable FROM markets)
  )
),
solve AS (
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point,
         commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
         n, s, solvable, quotes, 0 AS step, k_lo, k_hi, z_lo, z_hi, l_lo, l_hi, done
  FROM brackets
  UNION ALL
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point,
         commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
         n, s, solvable, quotes, step, k_lo, k_hi, z_lo, z_hi, l_lo, l_hi,
         step >= 100 OR (k_hi - k_lo < 1e-12 AND z_hi - z_lo < 1e-12 AND l_hi - l_lo < 1e-12) AS done
  FROM (
    -- keep the half of each bracket where the sum minus 1 changes sign (each sum decreases)
    SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point,
           commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
           n, s, solvable, quotes, step + 1 AS step,
           IF(power_sum > 1, k_mid, k_lo) AS k_lo, IF(power_sum > 1, k_hi, k_mid) AS k_hi,
           IF(shin_sum > 1, z_mid, z_lo) AS z_lo, IF(shin_sum > 1, z_hi, z_mid) AS z_hi,
           IF(logarithmic_sum > 1, l_mid, l_lo) AS l_lo, IF(logarithmic_sum > 1, l_hi, l_mid) AS l_hi
    FROM (
      SELECT *,
             (SELECT SUM(POW(q.implied_probability, k_mid)) FROM UNNEST(quotes) AS q) AS power_sum,
             (SELECT SUM((SQRT(z_mid * z_mid + 4 * (1 - z_mid) * q.implied_probability * q.implied_probability / s) - z_mid)
                         / (2 * (1 - z_mid))) FROM UNNEST(quotes) AS q) AS shin_sum,
             (SELECT SUM(1 / (1 + EXP(l_mid - LN(q.implied_probability / (1 - q.implied_probability)))))
              FROM UNNEST(quotes) AS q) AS logarithmic_sum
      FROM (
        SELECT *, (k_lo + k_hi) / 2 AS k_mid, (z_lo + z_hi) / 2 AS z_mid, (l_lo + l_hi) / 2 AS l_mid
        FROM solve
        WHERE NOT done
      )
    )
  )
),
solved AS (
  SELECT *,
         (k_lo + k_hi) / 2 AS power_k,
         (z_lo + z_hi) / 2 AS shin_z,
         (l_lo + l_hi) / 2 AS logarithmic_c,
         EXP((l_lo + l_hi) / 2) AS odds_ratio_c
  FROM solve
  WHERE done
),
quoted_lines AS (
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point, n, s,
         commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
         power_k, shin_z, odds_ratio_c, logarithmic_c,
         position + 1 AS side_position, q.side, q.point, q.price_decimal, q.price_american, q.implied_probability,
         IF(n >= 2, q.implied_probability / s, NULL) AS no_vig_multiplicative,
         IF(n >= 2, q.implied_probability - (s - 1) / n, NULL) AS no_vig_additive,
         POW(q.implied_probability, power_k) AS no_vig_power,
         (SQRT(shin_z * shin_z + 4 * (1 - shin_z) * q.implied_probability * q.implied_probability / s) - shin_z)
           / (2 * (1 - shin_z)) AS no_vig_shin,
         IF(n >= 2, (n - (s - 1) * q.price_decimal) / (n * q.price_decimal), NULL) AS no_vig_differential_margin_weighting,
         q.implied_probability / (odds_ratio_c + q.implied_probability - odds_ratio_c * q.implied_probability) AS no_vig_odds_ratio,
         1 / (1 + EXP(logarithmic_c - LN(q.implied_probability / (1 - q.implied_probability)))) AS no_vig_logarithmic
  FROM solved, UNNEST(quotes) AS q WITH OFFSET AS position
)
SELECT game_date, game_id, bookmaker_key, market_key, participant, line_point AS point, snapshot_timestamp,
       ANY_VALUE(commence_time) AS commence_time,
       ANY_VALUE(home_team) AS home_team,
       ANY_VALUE(away_team) AS away_team,
       ANY_VALUE(minutes_before_tipoff) AS minutes_before_tipoff,
       LOGICAL_AND(is_pre_tip) AS is_pre_tip,
       LOGICAL_AND(is_main_line) AS is_main_line,
       ANY_VALUE(n) AS outcomes,
       IF(ANY_VALUE(n) >= 2, ANY_VALUE(s) - 1, NULL) AS margin,
       ANY_VALUE(power_k) AS power_k,
       ANY_VALUE(shin_z) AS shin_z,
       MAX(IF(side_position = 1, side, NULL)) AS side_1,
       MAX(IF(side_position = 1, point, NULL)) AS point_1,
       MAX(IF(side_position = 1, price_decimal, NULL)) AS price_decimal_1,
       MAX(IF(side_position = 1, price_american, NULL)) AS price_american_1,
       MAX(IF(side_position = 1, implied_probability, NULL)) AS implied_probability_1,
       MAX(IF(side_position = 1, no_vig_multiplicative, NULL)) AS no_vig_multiplicative_1,
       MAX(IF(side_position = 1, no_vig_additive, NULL)) AS no_vig_additive_1,
       MAX(IF(side_position = 1, no_vig_power, NULL)) AS no_vig_power_1,
       MAX(IF(side_position = 1, no_vig_shin, NULL)) AS no_vig_shin_1,
       MAX(IF(side_position = 1, 1 / no_vig_multiplicative, NULL)) AS fair_decimal_multiplicative_1,
       MAX(IF(side_position = 1, 1 / no_vig_additive, NULL)) AS fair_decimal_additive_1,
       MAX(IF(side_position = 1, 1 / no_vig_power, NULL)) AS fair_decimal_power_1,
       MAX(IF(side_position = 1, 1 / no_vig_shin, NULL)) AS fair_decimal_shin_1,
       MAX(IF(side_position = 2, side, NULL)) AS side_2,
       MAX(IF(side_position = 2, point, NULL)) AS point_2,
       MAX(IF(side_position = 2, price_decimal, NULL)) AS price_decimal_2,
       MAX(IF(side_position = 2, price_american, NULL)) AS price_american_2,
       MAX(IF(side_position = 2, implied_probability, NULL)) AS implied_probability_2,
       MAX(IF(side_position = 2, no_vig_multiplicative, NULL)) AS no_vig_multiplicative_2,
       MAX(IF(side_position = 2, no_vig_additive, NULL)) AS no_vig_additive_2,
       MAX(IF(side_position = 2, no_vig_power, NULL)) AS no_vig_power_2,
       MAX(IF(side_position = 2, no_vig_shin, NULL)) AS no_vig_shin_2,
       MAX(IF(side_position = 2, 1 / no_vig_multiplicative, NULL)) AS fair_decimal_multiplicative_2,
       MAX(IF(side_position = 2, 1 / no_vig_additive, NULL)) AS fair_decimal_additive_2,
       MAX(IF(side_position = 2, 1 / no_vig_power, NULL)) AS fair_decimal_power_2,
       MAX(IF(side_position = 2, 1 / no_vig_shin, NULL)) AS fair_decimal_shin_2,
       ARRAY_AGG(STRUCT(side AS side,
                        point AS point,
                        price_decimal AS price_decimal,
                        price_american AS price_american,
                        implied_probability AS implied_probability,
                        no_vig_multiplicative AS no_vig_multiplicative,
                        no_vig_additive AS no_vig_additive,
                        no_vig_power AS no_vig_power,
                        no_vig_shin AS no_vig_shin,
                        no_vig_differential_margin_weighting AS no_vig_differential_margin_weighting,
                        no_vig_odds_ratio AS no_vig_odds_ratio,
                        no_vig_logarithmic AS no_vig_logarithmic) ORDER BY side_position) AS sides,
       ANY_VALUE(odds_ratio_c) AS odds_ratio_c,
       ANY_VALUE(logarithmic_c) AS logarithmic_c,
       MAX(IF(side_position = 1, no_vig_differential_margin_weighting, NULL)) AS no_vig_differential_margin_weighting_1,
       MAX(IF(side_position = 1, no_vig_odds_ratio, NULL)) AS no_vig_odds_ratio_1,
       MAX(IF(side_position = 1, no_vig_logarithmic, NULL)) AS no_vig_logarithmic_1,
       MAX(IF(side_position = 1, SAFE_DIVIDE(1, no_vig_differential_margin_weighting), NULL)) AS fair_decimal_differential_margin_weighting_1,
       MAX(IF(side_position = 1, 1 / no_vig_odds_ratio, NULL)) AS fair_decimal_odds_ratio_1,
       MAX(IF(side_position = 1, 1 / no_vig_logarithmic, NULL)) AS fair_decimal_logarithmic_1,
       MAX(IF(side_position = 2, no_vig_differential_margin_weighting, NULL)) AS no_vig_differential_margin_weighting_2,
       MAX(IF(side_position = 2, no_vig_odds_ratio, NULL)) AS no_vig_odds_ratio_2,
       MAX(IF(side_position = 2, no_vig_logarithmic, NULL)) AS no_vig_logarithmic_2,
       MAX(IF(side_position = 2, SAFE_DIVIDE(1, no_vig_differential_margin_weighting), NULL)) AS fair_decimal_differential_margin_weighting_2,
       MAX(IF(side_position = 2, 1 / no_vig_odds_ratio, NULL)) AS fair_decimal_odds_ratio_2,
       MAX(IF(side_position = 2, 1 / no_vig_logarithmic, NULL)) AS fair_decimal_logarithmic_2
FROM quoted_lines
GROUP BY game_date, game_id, bookmaker_key, market_key, participant, line_point, snapshot_timestamp
