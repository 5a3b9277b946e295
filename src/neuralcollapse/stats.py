"""Exact small-sample statistics for paired seeds: Student t, paired tests, TOST, Holm.

Pure Python (``math`` only): the verdicts of ``neuralcollapse reproduce`` must not depend
on SciPy. The Student-t distribution function is computed through the regularized
incomplete beta function, evaluated by its continued fraction (modified Lentz method);
quantiles invert it by safeguarded Newton steps. Both agree with ``scipy.stats.t`` to
1e-10 over 1..60 degrees of freedom (tests/test_stats.py).

Conventions: ``differences`` are per-seed paired differences (variant - baseline), n >= 2
of them; the test statistic is t = mean / (sd / sqrt(n)) with the sample standard
deviation (ddof 1) and n - 1 degrees of freedom. "for" p-values are one-sided in the
claimed direction, "against" p-values one-sided in the opposite one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ALPHA",
    "PairedTest",
    "betainc",
    "holm",
    "paired_test",
    "paired_test_from_summary",
    "t_cdf",
    "t_ppf",
    "t_sf",
    "tost",
]

ALPHA = 0.05  # one-sided level of every verdict

_EPS = 4e-16  # two units in the last place: the fraction has converged
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (valid and fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # even step of the fraction
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # odd step
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float, *, complement: float | None = None) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    ``complement`` may pass 1 - x computed without cancellation (the t distribution knows
    it exactly); by default it is ``1 - x``.
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    y = 1.0 - x if complement is None else complement
    if x == 0.0:
        return 0.0
    if y == 0.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    # I_x(a, b) = 1 - I_{1-x}(b, a): the fraction converges on this side
    return 1.0 - front * _beta_fraction(b, a, y) / b


def _check_df(df: float) -> float:
    if not (isinstance(df, (int, float)) and df > 0 and math.isfinite(df)):
        raise ValueError(f"degrees of freedom must be a positive finite number, got {df!r}")
    return float(df)


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (exact to ~1e-15)."""
    df = _check_df(df)
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    t2 = t * t
    # P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2); both x and 1 - x without cancellation
    tail = 0.5 * betainc(0.5 * df, 0.5, df / (df + t2), complement=t2 / (df + t2))
    return tail if t > 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    return t_sf(-t, df)


def t_ppf(p: float, df: float) -> float:
    """The quantile t with P(T <= t) = p (0 < p < 1)."""
    df = _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    # Upper half: find t > 0 with t_sf(t) = q; the sf is monotone, so bracket then Newton.
    q = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    t = 0.5 * (lo + hi)
    log_norm = math.lgamma(0.5 * (df + 1)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
    for _ in range(200):
        f = t_sf(t, df) - q
        if f > 0:
            lo = t
        else:
            hi = t
        density = math.exp(log_norm - 0.5 * (df + 1) * math.log1p(t * t / df))
        step = f / density  # d sf / dt = -density, so Newton moves t by +f / density
        candidate = t + step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - t) <= 1e-15 * max(1.0, abs(t)):
            return candidate
        t = candidate
    return t


@dataclass(frozen=True)
class PairedTest:
    """One paired test over seeds, in the units of the differences.

    Attributes:
        kind: "superiority" (the variant is better) or "equivalence" (TOST within
            ``margin``).
        n, df: seeds and degrees of freedom (n - 1).
        mean, sd: mean and sample standard deviation of the (signed) differences, as given.
        ci95: two-sided 95% confidence interval of the mean difference.
        t: mean / SE for superiority; for equivalence the smaller of the two TOST
            statistics (the binding one).
        p_for: one-sided p of the claim (superiority: the mean is better than 0;
            equivalence: the TOST p, the larger of the two one-sided p-values).
        p_against: one-sided p that the claim is false in its decisive direction
            (superiority: the mean is worse than 0; equivalence: worse than -margin).
        higher_is_better: the claimed direction.
        margin: the equivalence margin (None for superiority).
    """

    kind: str
    n: int
    df: int
    mean: float
    sd: float
    ci95: tuple[float, float]
    t: float
    p_for: float
    p_against: float
    higher_is_better: bool = True
    margin: float | None = None

    @property
    def p(self) -> float:
        """The decisive one-sided p: the smaller of ``p_for`` and ``p_against``."""
        return min(self.p_for, self.p_against)

    @property
    def points_for(self) -> bool:
        """Whether the data point towards the claim (``p_for <= p_against``)."""
        return self.p_for <= self.p_against

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["ci95"] = list(self.ci95)
        values["p"] = self.p
        return values


def _ratio(numerator: float, se: float) -> float:
    if se > 0:
        return numerator / se
    if numerator == 0:
        return math.nan  # no spread and no effect: no evidence either way
    return math.copysign(math.inf, numerator)


def _sf_or_one(t: float, df: int) -> float:
    return 1.0 if math.isnan(t) else t_sf(t, df)


def paired_test_from_summary(
    n: int,
    mean: float,
    sd: float,
    *,
    higher_is_better: bool = True,
    margin: float | None = None,
) -> PairedTest:
    """The paired test from the sufficient statistics n, mean and sample sd (ddof 1).

    Without ``margin``: superiority, H0 "no better" against "better in the claimed
    direction". With it: equivalence by two one-sided tests (TOST): the claim "within
    ``margin`` of each other" holds at level alpha when both t_low = (m + margin) / SE and
    t_high = (margin - m) / SE exceed the one-sided quantile, i.e. p_for = max of their
    p-values; ``p_against`` tests "worse than -margin" (in the claimed direction).
    """
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 seeds, got {n}")
    if not (math.isfinite(mean) and math.isfinite(sd) and sd >= 0):
        raise ValueError(f"mean and sd must be finite (sd >= 0), got {mean}, {sd}")
    if margin is not None and not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    df = n - 1
    se = sd / math.sqrt(n)
    half = t_ppf(0.975, df) * se
    ci = (mean - half, mean + half)
    signed = mean if higher_is_better else -mean  # > 0 means better
    if margin is None:
        t = _ratio(signed, se)
        return PairedTest(
            "superiority",
            n,
            df,
            mean,
            sd,
            ci,
            t,
            _sf_or_one(t, df),
            _sf_or_one(-t, df),
            higher_is_better,
        )
    t_low = _ratio(signed + margin, se)  # evidence of "better than -margin"
    t_high = _ratio(margin - signed, se)  # evidence of "worse than +margin"
    p_low, p_high = _sf_or_one(t_low, df), _sf_or_one(t_high, df)
    return PairedTest(
        "equivalence",
        n,
        df,
        mean,
        sd,
        ci,
        min(t_low, t_high),
        max(p_low, p_high),
        _sf_or_one(-t_low, df),
        higher_is_better,
        margin,
    )


def paired_test(
    differences: Sequence[float],
    *,
    higher_is_better: bool = True,
    margin: float | None = None,
) -> PairedTest:
    """:func:`paired_test_from_summary` of per-seed differences (variant - baseline)."""
    values = [float(d) for d in differences]
    if len(values) < 2:
        raise ValueError(f"a paired test needs at least 2 seeds, got {len(values)}")
    return paired_test_from_summary(
        len(values),
        statistics.fmean(values),
        statistics.stdev(values),
        higher_is_better=higher_is_better,
        margin=margin,
    )


def tost(
    differences: Sequence[float], margin: float, *, higher_is_better: bool = True
) -> PairedTest:
    """Two one-sided tests of equivalence within ``margin`` (see :func:`paired_test`)."""
    return paired_test(differences, higher_is_better=higher_is_better, margin=margin)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Sorted ascending p_(1) <= ... <= p_(m), the adjusted p_(i) is
    max_{j <= i} min(1, (m - j + 1) p_(j)); rejecting where the adjusted p < alpha
    controls the family-wise error rate at alpha for any dependence between the tests.
    """
    m = len(pvalues)
    for p in pvalues:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
