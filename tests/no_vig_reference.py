"""An independent reference for the no-vig methods of odds_api_market_snapshots.

The SQL solves each method's parameter with closed-form fair probabilities inside one
bisection over proven brackets. This module works the other way round, from each method's
model of the book: a forward map F(f; theta) from a fair probability f to the implied
probability 1/decimal the book would quote, increasing in f. For a trial theta every outcome's
f is found by bisecting F(f; theta) = p_i on (0, 1) (no closed form), and theta by bisecting
sum(f) = 1 over a wide fixed bracket. The result is then put back through the full model
(Shin's with its own normaliser, not the observed sum) as a residual check.

Models (penaltyblog's `implied` module defines each method's fair probabilities; these are
the same relations read as the book's pricing):
  power           p = f ^ (1 / k)
  Shin            p = sqrt(z f + (1 - z) f^2) * D, D = sum_j sqrt(z f_j + (1 - z) f_j^2)
                  (Shin 1993; Jullien & Salanie 1994), so sum(p) = D^2
  odds ratio      p / (1 - p) = c f / (1 - f)          (Cheung 2015, via Buchdahl)
  logarithmic     logit(p) = logit(f) + c              (penaltyblog `_logarithmic`)
The closed-form methods are their definitions, as penaltyblog writes them:
  multiplicative  p_i / sum(p);  additive  p_i + (1 - sum(p)) / n;
  differential margin weighting  1 / (n d_i / (n - margin d_i))   (Buchdahl)

Dev/test only: never imported by the package.
"""

from __future__ import annotations

import math
from typing import Callable

METHODS = ("multiplicative", "additive", "power", "shin", "differential_margin_weighting", "odds_ratio",
           "logarithmic")
# The parameter each root-found method reports, as the table function names its column.
PARAMETERS = {"power": "power_k", "shin": "shin_z", "odds_ratio": "odds_ratio_c", "logarithmic": "logarithmic_c"}


def _bisect_increasing(g: Callable[[float], float], lo: float, hi: float, steps: int = 200) -> float:
    """The x in [lo, hi] where an increasing g crosses 0."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def _logit(x: float) -> float:
    return math.log(x / (1 - x))


def _shin_price(f: float, z: float) -> float:
    """Shin's book price of one outcome before normalisation."""
    return math.sqrt(z * f + (1 - z) * f * f)


# method -> (forward map F(f, theta, observed sum), theta bracket); F increases in f and the
# inverted f decreases in theta.
_MODELS: dict[str, tuple[Callable[[float, float, float], float], tuple[float, float]]] = {
    "power": (lambda f, k, s: f ** (1 / k), (1e-3, 1e3)),
    "shin": (lambda f, z, s: _shin_price(f, z) * math.sqrt(s), (-0.999, 0.999)),
    # theta is ln(c) for the odds ratio: a bracket of 1e-9..1e9 in c
    "odds_ratio": (lambda f, log_c, s: 1 / (1 + (1 - f) / (math.exp(log_c) * f)), (-20.7, 20.7)),
    "logarithmic": (lambda f, c, s: 1 / (1 + math.exp(-(_logit(f) + c))), (-20.0, 20.0)),
}


def _invert(method: str, p: list[float]) -> tuple[list[float], float]:
    forward, (lo, hi) = _MODELS[method]
    s = sum(p)

    def fair(theta: float) -> list[float]:
        return [_bisect_increasing(lambda f: forward(f, theta, s) - target, 1e-300, 1 - 1e-16) for target in p]

    # sum(fair(theta)) decreases in theta: bisect -(sum - 1), which increases
    theta = _bisect_increasing(lambda t: 1 - sum(fair(t)), lo, hi, steps=100)
    return fair(theta), theta


def no_vig(prices: list[float]) -> dict:
    """Every method's fair probabilities of a market quoted at these decimal prices, and the
    parameters: {'margin', <method>: [f_i], 'power_k', 'shin_z', 'odds_ratio_c', 'logarithmic_c'}."""
    p = [1 / d for d in prices]
    s, n = sum(p), len(p)
    margin = s - 1
    out: dict = {"margin": margin,
                 "multiplicative": [x / s for x in p],
                 "additive": [x + (1 - s) / n for x in p],
                 "differential_margin_weighting": [1 / (n * d / (n - margin * d)) for d in prices]}
    for method in ("power", "shin", "odds_ratio", "logarithmic"):
        out[method], theta = _invert(method, p)
        out[PARAMETERS[method]] = math.exp(theta) if method == "odds_ratio" else theta
    return out


def model_residual(method: str, prices: list[float], fair: list[float], parameter: float) -> float:
    """The largest gap between the quoted implied probabilities and what the method's model of
    the book quotes for these fair probabilities (Shin with its own normaliser D)."""
    p = [1 / d for d in prices]
    if method == "power":
        quoted = [f ** (1 / parameter) for f in fair]
    elif method == "shin":
        d = sum(_shin_price(f, parameter) for f in fair)
        quoted = [_shin_price(f, parameter) * d for f in fair]
    elif method == "odds_ratio":
        quoted = [parameter * f / (1 - f) / (1 + parameter * f / (1 - f)) for f in fair]
    elif method == "logarithmic":
        quoted = [1 / (1 + math.exp(-(_logit(f) + parameter))) for f in fair]
    else:
        raise ValueError(method)
    return max(abs(a - b) for a, b in zip(p, quoted))
