"""The no-vig reference (tests/no_vig_reference.py) against published values, and the shape of
the SQL that the integration tests compare with it (tests/integration/test_no_vig_methods.py).

Published values: the issue's (penaltyblog's `implied` and the `shin` package agree on Shin
0.373465 / 0.292538 / 0.333997 for 2.60 / 3.30 / 2.90) and ODDS_API.md's worked examples.
"""

from __future__ import annotations

import math
import re

import pytest

from oddsbatch.routines import ROUTINE_DIR
from tests.no_vig_reference import METHODS, PARAMETERS, model_residual, no_vig

ONE_X_TWO = [2.60, 3.30, 2.90]
TEN_WAY = [3.2, 4.5, 6.0, 8.0, 10.0, 13.0, 17.0, 21.0, 26.0, 34.0]
MARKETS = {"two-way": [1.80, 2.10], "1x2": ONE_X_TWO, "ten-way": TEN_WAY, "favourite-longshot": [1.01, 30.0],
           "longshot-favourite": [30.0, 1.01], "three-way extreme": [1.01, 30.0, 45.0],
           "underround": [2.05, 2.05], "even": [1.9090909090909092, 1.9090909090909092]}


def places(values, n):
    return [round(v, n) for v in values]


def test_shin_and_power_on_a_1x2_match_the_published_values():
    got = no_vig(ONE_X_TWO)
    assert got["shin"] == pytest.approx([0.373465, 0.292538, 0.333997], abs=5e-7)
    assert places(got["shin"], 5) == [0.37347, 0.29254, 0.33400]
    assert places(got["power"], 5) == [0.37371, 0.29233, 0.33395]


def test_the_worked_examples_of_the_odds_notes():
    got = no_vig([1.80, 2.10])
    assert places(got["multiplicative"], 4) == [0.5385, 0.4615]
    assert places(got["additive"], 4) == places(got["shin"], 4) == [0.5397, 0.4603]
    assert round(got["shin_z"], 4) == 0.0318
    assert places(got["power"], 4) == [0.5403, 0.4597] and round(got["power_k"], 4) == 1.0474
    minus_110 = 1 + 100 / 110
    even = no_vig([minus_110, minus_110])
    assert round(even["margin"], 4) == 0.0476
    for method in METHODS:
        assert places(even[method], 12) == [0.5, 0.5], method


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_every_method_sums_to_one_and_reproduces_the_book(name):
    prices = MARKETS[name]
    got = no_vig(prices)
    for method in METHODS:
        assert abs(sum(got[method]) - 1) < 1e-9, method
    for method, parameter in PARAMETERS.items():
        assert model_residual(method, prices, got[method], got[parameter]) < 1e-9, method


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_identities_between_methods(name):
    """Two outcomes: Shin is additive (Shin's closed form). Any n: differential margin weighting
    is additive (1 / (n d / (n - M d)) = 1/d - M/n), and logarithmic is the odds ratio with
    c = ln(odds ratio c). Shown here on numbers, not assumed by the reference."""
    got = no_vig(MARKETS[name])
    assert got["differential_margin_weighting"] == pytest.approx(got["additive"], abs=1e-12)
    assert got["logarithmic"] == pytest.approx(got["odds_ratio"], abs=1e-9)
    assert got["logarithmic_c"] == pytest.approx(math.log(got["odds_ratio_c"]), abs=1e-9)
    if len(MARKETS[name]) == 2:
        assert got["shin"] == pytest.approx(got["additive"], abs=1e-9)


def test_the_favourite_longshot_bias_orders_the_methods():
    """On 1.01 vs 30 the longshot's fair probability falls from multiplicative through Shin and
    the odds ratio to power: what tells the methods apart (a reference that mixed them up fails)."""
    got = no_vig([1.01, 30.0])
    longshot = {m: got[m][1] for m in METHODS}
    assert longshot["multiplicative"] > longshot["shin"] > longshot["odds_ratio"] > longshot["power"]


def test_the_sql_solves_with_one_recursive_bisection_and_names_its_sources():
    """One recursive construct, not unrolled copies: the routine's file has a single WITH
    RECURSIVE, no numbered step CTEs, and cites the methods' sources."""
    text = (ROUTINE_DIR / "odds_api_market_snapshots.sql").read_text()
    assert text.count("WITH RECURSIVE") == 1 and "FROM solve" in text
    assert not re.search(r"\bstep\d+\b|\b[kz]\d+\b", text)
    for source in ("penaltyblog", "Shin 1993", "Jullien & Salanie", "Cheung 2015", "Buchdahl", "1e-12"):
        assert source in text, source
