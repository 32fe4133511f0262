-- The betting math of every line, for game dates in [start_date, end_date]: one row per
-- (snapshot, book, market, participant, point) from odds_api_lines, its sides side by side
-- (side_1: Over / Yes / the home team, side_2: Under / No / the away team; a market with more
-- outcomes lists every one in `sides`, ordered the same way, then by name). point is the
-- line's line_point (a spread's home point).
-- margin = sum(1/decimal) - 1. No-vig probabilities (NULL with fewer than two sides quoted):
--   multiplicative p_i / sum(p);  additive p_i - (sum(p) - 1) / n;
--   power p_i ^ k with sum = 1: 12 Newton steps from k = 1 on f(k) = sum(p^k) - 1
--     (f' = sum(p^k ln p)), unrolled below, quadratic convergence: exact to float precision;
--   Shin (sqrt(z^2 + 4 (1 - z) p_i^2 / sum(p)) - z) / (2 (1 - z)): for two outcomes it equals
--     additive, with the closed form z = (p_1^2 / sum(p) - a_1^2) / (a_1 (1 - a_1)), a_1 the
--     additive fair probability of side 1; for more outcomes z is iterated (12 fixed-point
--     steps z <- (sum sqrt(z^2 + 4 (1 - z) p_i^2 / sum(p)) - 2) / (n - 2), from z = 0).
-- Fair decimal price = 1 / fair probability. Every window partitions by the line, game_date
-- first. https://cloud.google.com/bigquery/docs/reference/standard-sql/window-functions
WITH quoted AS (
  SELECT *,
         CASE WHEN side IN ('Over', 'Yes') OR side = home_team THEN 0
              WHEN side IN ('Under', 'No') OR side = away_team THEN 1
              ELSE 2 END AS side_rank
  FROM `${project}.${dataset}.odds_api_lines`(start_date, end_date)
),
base AS (
  SELECT *,
         ROW_NUMBER() OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point ORDER BY side_rank, side) AS side_position,
         COUNT(*) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) AS n,
         SUM(implied_probability) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) AS s,
         CAST(1 AS FLOAT64) AS k0,
         CAST(0 AS FLOAT64) AS z0
  FROM quoted
),
step1 AS (
  SELECT *,
         k0 - SAFE_DIVIDE(SUM(POW(implied_probability, k0)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k0) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k1,
         IF(n > 2, (SUM(SQRT(z0 * z0 + 4 * (1 - z0) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z1
  FROM base
),
step2 AS (
  SELECT *,
         k1 - SAFE_DIVIDE(SUM(POW(implied_probability, k1)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k1) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k2,
         IF(n > 2, (SUM(SQRT(z1 * z1 + 4 * (1 - z1) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z2
  FROM step1
),
step3 AS (
  SELECT *,
         k2 - SAFE_DIVIDE(SUM(POW(implied_probability, k2)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k2) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k3,
         IF(n > 2, (SUM(SQRT(z2 * z2 + 4 * (1 - z2) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z3
  FROM step2
),
step4 AS (
  SELECT *,
         k3 - SAFE_DIVIDE(SUM(POW(implied_probability, k3)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k3) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k4,
         IF(n > 2, (SUM(SQRT(z3 * z3 + 4 * (1 - z3) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z4
  FROM step3
),
step5 AS (
  SELECT *,
         k4 - SAFE_DIVIDE(SUM(POW(implied_probability, k4)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k4) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k5,
         IF(n > 2, (SUM(SQRT(z4 * z4 + 4 * (1 - z4) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z5
  FROM step4
),
step6 AS (
  SELECT *,
         k5 - SAFE_DIVIDE(SUM(POW(implied_probability, k5)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k5) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k6,
         IF(n > 2, (SUM(SQRT(z5 * z5 + 4 * (1 - z5) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z6
  FROM step5
),
step7 AS (
  SELECT *,
         k6 - SAFE_DIVIDE(SUM(POW(implied_probability, k6)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k6) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k7,
         IF(n > 2, (SUM(SQRT(z6 * z6 + 4 * (1 - z6) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z7
  FROM step6
),
step8 AS (
  SELECT *,
         k7 - SAFE_DIVIDE(SUM(POW(implied_probability, k7)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k7) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k8,
         IF(n > 2, (SUM(SQRT(z7 * z7 + 4 * (1 - z7) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z8
  FROM step7
),
step9 AS (
  SELECT *,
         k8 - SAFE_DIVIDE(SUM(POW(implied_probability, k8)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k8) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k9,
         IF(n > 2, (SUM(SQRT(z8 * z8 + 4 * (1 - z8) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z9
  FROM step8
),
step10 AS (
  SELECT *,
         k9 - SAFE_DIVIDE(SUM(POW(implied_probability, k9)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k9) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k10,
         IF(n > 2, (SUM(SQRT(z9 * z9 + 4 * (1 - z9) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z10
  FROM step9
),
step11 AS (
  SELECT *,
         k10 - SAFE_DIVIDE(SUM(POW(implied_probability, k10)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k10) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k11,
         IF(n > 2, (SUM(SQRT(z10 * z10 + 4 * (1 - z10) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z11
  FROM step10
),
step12 AS (
  SELECT *,
         k11 - SAFE_DIVIDE(SUM(POW(implied_probability, k11)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 1,
                            SUM(POW(implied_probability, k11) * LN(implied_probability)) OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point)) AS k12,
         IF(n > 2, (SUM(SQRT(z11 * z11 + 4 * (1 - z11) * implied_probability * implied_probability / s))
                     OVER (PARTITION BY game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point) - 2) / (n - 2), NULL) AS z12
  FROM step11
),
fair AS (
  SELECT *,
         implied_probability / s AS no_vig_multiplicative,
         implied_probability - (s - 1) / n AS no_vig_additive,
         k12 AS power_k,
         POW(implied_probability, k12) AS no_vig_power,
         z12 AS shin_z_iterated
  FROM step12
  WHERE n >= 2
),
shin AS (
  SELECT *,
         IF(n = 2, no_vig_additive,
            (SQRT(shin_z_iterated * shin_z_iterated + 4 * (1 - shin_z_iterated) * implied_probability * implied_probability / s)
             - shin_z_iterated) / (2 * (1 - shin_z_iterated))) AS no_vig_shin,
         IF(n = 2,
            SAFE_DIVIDE(implied_probability * implied_probability / s - no_vig_additive * no_vig_additive,
                        no_vig_additive * (1 - no_vig_additive)),
            shin_z_iterated) AS side_shin_z
  FROM fair
),
quoted_lines AS (
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point, n, s, side_position, side, point, price_decimal, price_american, implied_probability,
         commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
         CAST(NULL AS FLOAT64) AS no_vig_multiplicative, CAST(NULL AS FLOAT64) AS no_vig_additive,
         CAST(NULL AS FLOAT64) AS no_vig_power, CAST(NULL AS FLOAT64) AS no_vig_shin,
         CAST(NULL AS FLOAT64) AS power_k, CAST(NULL AS FLOAT64) AS side_shin_z
  FROM base
  WHERE n < 2
  UNION ALL
  SELECT game_date, game_id, bookmaker_key, market_key, participant, snapshot_timestamp, line_point, n, s, side_position, side, point, price_decimal, price_american, implied_probability,
         commence_time, home_team, away_team, minutes_before_tipoff, is_pre_tip, is_main_line,
         no_vig_multiplicative, no_vig_additive, no_vig_power, no_vig_shin, power_k, side_shin_z
  FROM shin
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
       MAX(power_k) AS power_k,
       MAX(IF(side_position = 1, side_shin_z, NULL)) AS shin_z,
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
                        no_vig_shin AS no_vig_shin) ORDER BY side_position) AS sides
FROM quoted_lines
GROUP BY game_date, game_id, bookmaker_key, market_key, participant, line_point, snapshot_timestamp
