"""P(up) thresholds in a sweep, at the resolution P(up) really has.

The empirical P(up) of n sample paths takes only the values k/n, so thresholds strictly
between two neighbours decide identically: the README's grid `long_threshold=0.55:0.75:0.05`
with 8 paths is 5 values but 3 different strategies. Two thresholds decide alike, whatever
the comparison (above, below), exactly when they lie in the same class: on the same value
k/n, or in the same open gap (k/n, (k+1)/n). So

* a grid keeps one point per class (the first given) and says once why points were merged;
* a TPE range over a threshold steps by 1/(2n) from a class's representative: each value k/n
  and each gap's midpoint, every class once.

With `forecast.p_up: kernel` P(up) is continuous and nothing changes.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution

from kronos_trader.config import Settings
from kronos_trader.decision import load_policy
from kronos_trader.forecasting.probability import p_up_gap

__all__ = ["threshold_params", "threshold_class", "dedupe_grid", "snap_distribution"]


def threshold_params(settings: Settings, names: list[str]) -> list[str]:
    """The sweep parameters (dotted names) that the policy compares with an empirical P(up)."""
    if settings.forecast.p_up != "empirical":
        return []
    policy = load_policy(settings.strategy.name, settings.strategy.params)
    compared = set(getattr(policy, "p_up_thresholds", dict)())
    return [n for n in names if n.startswith("strategy.params.") and n.removeprefix("strategy.params.") in compared]


def threshold_class(value: Any, sample_count: int) -> Any:
    """2k for a threshold on k/n, 2k + 1 inside (k/n, (k+1)/n); other values stand for themselves."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < value < 1.0:
        return ("value", value)
    gap = p_up_gap(value, sample_count)
    return 2 * round(value * sample_count) if gap is None else 2 * round(gap[0] * sample_count) + 1


def dedupe_grid(grid: list[dict[str, Any]], names: list[str], sample_count: int) -> tuple[list[dict], list[str]]:
    """One grid point per class of its thresholds (the first given), and a note per
    parameter whose values were merged."""
    if not names:
        return grid, []
    kept, seen = [], set()
    for point in grid:
        key = tuple((n, threshold_class(v, sample_count)) if n in names else (n, repr(v)) for n, v in point.items())
        if key not in seen:
            seen.add(key)
            kept.append(point)
    notes = []
    for name in names:
        values = list(dict.fromkeys(p[name] for p in grid))
        classes = list(dict.fromkeys(threshold_class(v, sample_count) for v in values))
        if len(classes) < len(values):
            shown = ", ".join(f"{v:g}" for v in dict.fromkeys(p[name] for p in kept))
            notes.append(f"{name.removeprefix('strategy.params.')}: {len(values)} values give {len(classes)} distinct "
                         f"strategies: P(up) from {sample_count} sample paths moves in steps of 1/{sample_count}, "
                         f"and thresholds between the same two steps decide alike; running {shown} "
                         f"({len(grid)} grid points -> {len(kept)}; more samples or forecast.p_up: kernel refine it)")
    return kept, notes


def snap_distribution(name: str, dist: BaseDistribution, sample_count: int) -> tuple[BaseDistribution, str | None]:
    """A TPE range over a P(up) threshold, stepping through its classes (see the module)."""
    if not isinstance(dist, FloatDistribution) or dist.log:
        return dist, None
    half = Fraction(1, 2 * sample_count)

    def representative(value: float) -> Fraction:
        cls = threshold_class(value, sample_count)
        return half * cls if isinstance(cls, int) else Fraction(value).limit_denominator(10 ** 9)

    low, high = representative(dist.low), representative(dist.high)
    if not 0 < low < high < 1:
        return dist, None
    snapped = FloatDistribution(float(low), float(high), step=float(half))
    note = (f"{name.removeprefix('strategy.params.')}: {dist.low:g}..{dist.high:g} searched as {float(low):g}.."
            f"{float(high):g} in steps of 1/{2 * sample_count} (P(up) from {sample_count} sample paths moves in "
            f"steps of 1/{sample_count}: each value and each gap between two tried once)")
    return snapped, note
