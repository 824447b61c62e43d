"""Recalibrated P(up): a monotone map from the model's P(up) to the frequency of up moves.

Kronos' P(up) is overconfident (the published tracker's #323, #325): among forecasts saying
0.8, far fewer than 80% go up. Per horizon step, a map g is fitted on past forecasts'
P(up) and whether the close then ended above the last close: isotonic regression (scipy's
pool-adjacent-violators, any monotone shape) or a logistic fit on the log-odds (Platt
scaling: two parameters, steadier on little history). It is walk-forward: a forecast made
at t is recalibrated with forecasts whose outcome was known at t only. Until `min_history`
outcomes are known at a step, P(up) is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np
from scipy.optimize import isotonic_regression

__all__ = ["PUpMap", "fit_p_up_map", "rolling_recalibrate", "recalibrate_requests", "P_UP_CALIBRATIONS"]

P_UP_CALIBRATIONS = ("none", "isotonic", "logistic")
_EPS = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class PUpMap:
    """g(p): isotonic (`knots`, `values`, interpolated) or logistic (`a`, `b` on log-odds)."""

    kind: Literal["isotonic", "logistic"]
    knots: np.ndarray | None = None
    values: np.ndarray | None = None
    a: float = 1.0
    b: float = 0.0

    def __call__(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.kind == "isotonic":
            return np.interp(p, self.knots, self.values)
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))


def fit_p_up_map(kind: str, p, up) -> PUpMap:
    """The map from P(up) values `p` to outcomes `up` (1 up, 0 not)."""
    p, up = np.asarray(p, dtype=np.float64), np.asarray(up, dtype=np.float64)
    if kind == "isotonic":
        order = np.argsort(p, kind="stable")
        xs, ys = p[order], up[order]
        knots, first = np.unique(xs, return_index=True)  # one knot per distinct P(up): mean outcome, weight = count
        counts = np.diff(np.r_[first, len(xs)])
        means = np.add.reduceat(ys, first) / counts
        fitted = isotonic_regression(means, weights=counts, increasing=True).x
        return PUpMap("isotonic", knots, np.clip(fitted, _EPS, 1 - _EPS))
    if kind == "logistic":
        x = np.stack([_logit(p), np.ones(len(p))], axis=1)
        theta = np.array([1.0, 0.0])
        ridge = np.diag([1e-3, 1e-3])  # a tiny pull to the identity map keeps separable data finite
        for _ in range(25):  # Newton steps on the penalised log-likelihood: two parameters, fast and exact
            q = 1.0 / (1.0 + np.exp(-(x @ theta)))
            grad = x.T @ (q - up) + ridge @ (theta - [1.0, 0.0])
            hess = (x * (q * (1 - q))[:, None]).T @ x + ridge
            delta = np.linalg.solve(hess, grad)
            theta = theta - delta
            if np.max(np.abs(delta)) < 1e-10:
                break
        return PUpMap("logistic", a=float(theta[0]), b=float(theta[1]))
    raise ValueError(f"P(up) calibration must be one of {', '.join(P_UP_CALIBRATIONS)}, got {kind!r}")


def rolling_recalibrate(made_at: Sequence[float], p_up: np.ndarray, up: np.ndarray, known_at: np.ndarray,
                        kind: str, min_history: int = 30, span: float | None = None,
                        refit_growth: float = 0.02, rows: Sequence[int] | None = None) -> np.ndarray:
    """Walk-forward recalibrated P(up) of n time-ordered forecasts (n, steps): forecast i at
    step h uses the forecasts j < i whose step-h outcome was known at `made_at[i]`
    (`known_at[j, h] <= made_at[i]`), made within `span` before it (None: all). The map is
    refitted when the known outcomes grew by `refit_growth` (at least one) since the last
    fit, which keeps long evaluations fast; 0 refits for every forecast, so a forecast's
    value depends on its own history only (what the forecast service needs: live = backtest).

    `rows`: recalibrate only these forecasts (the others keep their P(up)), with the values
    they get when all are: a map is fitted only where one of them uses it (a live call asks
    for the newest forecast, its history only calibrates it)."""
    if kind == "none":
        return np.asarray(p_up, dtype=np.float64).copy()
    made = np.asarray(made_at, dtype=np.float64)
    p_up, up, known = (np.asarray(v, dtype=np.float64) for v in (p_up, up, known_at))
    out = p_up.copy()
    wanted = None if rows is None else set(int(i) for i in rows)
    for h in range(p_up.shape[1]):
        # an outcome known by made[i] belongs to an earlier forecast (it is known after its own
        # forecast was made), so "known by then" is a prefix of the outcomes sorted by known time
        has = np.flatnonzero(~np.isnan(up[:, h]))
        order = has[np.argsort(known[has, h], kind="stable")]
        counts = np.searchsorted(known[order, h], made, side="right")
        fitted, basis, size = None, None, 0  # the map, and the forecasts of its refit point (fitted when used)
        for i in range(len(made)):
            usable = order[:counts[i]]
            usable = usable[usable < i]
            if span is not None:
                usable = usable[made[usable] >= made[i] - span]
            if len(usable) < max(2, min_history):
                continue
            if basis is None or refit_growth <= 0 or span is not None or \
                    len(usable) - size >= max(1, int(size * refit_growth)):
                fitted, basis, size = None, usable, len(usable)
            if wanted is not None and i not in wanted:
                continue
            if fitted is None:
                fitted = fit_p_up_map(kind, p_up[basis, h], up[basis, h])
            out[i, h] = fitted(p_up[i, h])
    return out


def recalibrate_requests(requests: Sequence, history: Sequence, raw: dict, served: dict, kind: str,
                         min_history: int, span_bars: int) -> dict:
    """The served forecasts of `requests` with P(up) = g(model's P(up)), g fitted per step on
    the forecasts (`history` and the requests themselves) made within `span_bars` bars before
    each, whose step's close had closed by then. `raw` holds every forecast's own P(up)
    (before spread calibration); a step's outcome is whether the step-th next bar closed
    above the last close."""
    series: dict[int, dict[int, list]] = {}
    for r in [*history, *requests]:
        series.setdefault(id(r.candles), {}).setdefault(r.position, []).append(r)
    wanted = {r.key for r in requests}
    out = dict(served)
    for items in series.values():
        positions = sorted(items)
        first = items[positions[0]][0]
        close = first.candles["close"].to_numpy(dtype=np.float64)
        forecasts = [raw[items[p][0].key] for p in positions]
        steps = min(f.horizon for f in forecasts)
        p_up = np.stack([f.p_up[:steps] for f in forecasts])
        last = np.array([f.last_close for f in forecasts])
        target = np.asarray(positions)[:, None] + np.arange(1, steps + 1)[None, :]
        inside = target < len(close)
        up = np.where(inside, close[np.minimum(target, len(close) - 1)] > last[:, None], np.nan)
        asked = [i for i, p in enumerate(positions) if any(r.key in wanted for r in items[p])]
        recal = rolling_recalibrate(positions, p_up, up, target, kind, min_history, span=span_bars, rows=asked)
        for i, p in enumerate(positions):
            for r in items[p]:
                if r.key in wanted:
                    f = out[r.key]
                    value = f.p_up.copy()
                    value[:steps] = recal[i]
                    out[r.key] = replace(f, p_up=value)
    return out
