"""Forecast skill: the one scorer for stored forecasts, used by backtests, `evaluate` and the skill gate.

A forecast made at bar t (its `window_end`) for steps 1..H is scored once all H closes are
known (each step at the first bar at or after its calendar stamp, so holidays resolve), against two naive forecasts of the same windows: a random walk (the last close, a
point forecast whose CRPS is its absolute error) and a random walk with rolling-volatility
normal bands (sigma from the `vol_window` one-bar log returns known at t, widening with
sqrt(step)). Per step: MAE, CRPS, the CRPS skill score 1 - CRPS / CRPS(baseline) against
each baseline, 50% and 90% band coverage, the direction hit rate (a call is P(up) above or
below 1/2) with a Wilson 95% interval, and the Spearman rank correlation of predicted and
realised returns. No model is called: everything comes from the forecasts' payloads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from kronos_trader.data import infer_bar_interval
from kronos_trader.forecasting.values import WindowForecast

from .metrics import central_interval, coverage, crps_ensemble, crps_normal, mae, normal_interval, rmse

__all__ = ["ResolvedForecasts", "SkillReport", "resolve_forecasts", "target_positions", "score_forecasts",
           "score_run", "score_step", "wilson_interval", "correlation", "rank_correlation", "non_overlapping", "forecast_crps", "baseline_crps",
           "direction_hits", "rolling_vol", "report_steps", "BASELINES", "Z95", "FORECASTER_LABELS",
           "FORECASTER_SHORT", "SCORE_COLUMNS"]

Z95 = 1.959963984540054
BAND_LEVELS = (0.5, 0.9)
BASELINES = ("random_walk", "random_walk_vol")
# One vocabulary for every skill table (backtest console and HTML, `evaluate`, the web pages):
# the forecasters' names, long and short, and the score columns.
FORECASTER_LABELS = {"model": "Kronos", "model_calibrated": "Kronos calibrated",
                     "random_walk": "RW (last close)", "random_walk_vol": "RW + rolling vol",
                     "random_walk_static_vol": "RW + static vol"}
FORECASTER_SHORT = {"model": "Kronos", "model_calibrated": "Kronos cal.", "random_walk": "RW",
                    "random_walk_vol": "RW+vol", "random_walk_static_vol": "RW+static vol"}
SCORE_COLUMNS = {"step": "step", "forecaster": "forecaster", "mae": "MAE", "rmse": "RMSE", "crps": "CRPS",
                 "skill_rw": "skill RW", "skill_rw_vol": "skill RW+vol", "coverage_50": "cov 50%",
                 "coverage_90": "cov 90%", "hit_rate": "hit rate", "hit_ci": "hit rate, 95% CI", "rank": "rank"}
BASELINE_LABELS = {k: FORECASTER_LABELS[k] for k in BASELINES}
BASELINE_SHORT = {k: FORECASTER_SHORT[k] for k in BASELINES}


@dataclass
class ResolvedForecasts:
    """Forecasts whose whole horizon has passed, as aligned arrays over n windows.

    `samples` (n, m, H) close paths or None; `quantiles[q]` (n, H) may be empty when only
    samples exist; `vol` (n,) the rolling one-bar log-return volatility known at each origin.
    """

    times: pd.DatetimeIndex
    last_close: np.ndarray
    realized: np.ndarray
    mean: np.ndarray
    p_up: np.ndarray
    vol: np.ndarray
    samples: np.ndarray | None = None
    quantiles: dict[float, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.last_close)

    @property
    def horizon(self) -> int:
        return self.realized.shape[1]


def rolling_vol(log_close: np.ndarray, positions: Sequence[int], window: int | None) -> np.ndarray:
    """Standard deviation of the one-bar log returns ending at each position: the last
    `window` of them (None: all returns up to the position). Known at the position's close."""
    returns = np.diff(log_close)  # returns[i] runs from bar i to bar i + 1
    out = []
    for p in positions:
        recent = returns[max(0, p - window) if window else 0:p]
        out.append(float(np.std(recent)) if len(recent) > 1 else float(np.std(returns[:max(2, p)])))
    return np.asarray(out)


def target_positions(index: pd.DatetimeIndex, origin: int, f: WindowForecast) -> np.ndarray | None:
    """Positions in `index` of the H bars a forecast made at bar `origin` is for: with
    calendar stamps, the first bar at or after each stamp (a step stamped on a holiday or a
    bar missing from the data resolves at the next bar that exists), else the next H bars.
    None when the origin is not in the data or the data does not reach a target yet."""
    if origin < 0:
        return None
    if f.stamps is not None:
        pos = index.searchsorted(pd.DatetimeIndex(f.stamps).as_unit(index.unit), side="left")
    else:
        pos = origin + np.arange(1, f.horizon + 1)
    if len(pos) == 0 or (pos >= len(index)).any() or (pos <= origin).any():
        return None
    return np.asarray(pos)


def resolve_forecasts(forecasts: Iterable[WindowForecast], candles: pd.DataFrame, vol_window: int = 48,
                      upto: pd.Timestamp | None = None) -> ResolvedForecasts | None:
    """The forecasts among `forecasts` whose H target closes are in `candles` and closed by
    `upto` (default: the last bar's close), with their outcomes. None when none resolved."""
    index = candles.index
    if len(index) < 2:
        return None
    interval = infer_bar_interval(index)
    close = candles["close"].to_numpy(dtype=np.float64)
    limit = (index[-1] + interval) if upto is None else pd.Timestamp(upto)
    rows = []
    for f in sorted(forecasts, key=lambda f: f.window_end):
        origin = index.get_indexer([f.bar_open])[0]
        pos = target_positions(index, origin, f)
        if pos is None or index[pos[-1]] + interval > limit:
            continue
        rows.append((f, origin, pos))
    if not rows:
        return None
    fs = [r[0] for r in rows]
    horizon = min(f.horizon for f in fs)
    fs_paths = [f.close_paths for f in fs]
    samples = None
    if all(p is not None for p in fs_paths) and len({p.shape[0] for p in fs_paths}) == 1:
        samples = np.stack([p[:, :horizon] for p in fs_paths]).astype(np.float64)
    levels = set.intersection(*(set(f.quantiles) for f in fs))
    return ResolvedForecasts(
        times=pd.DatetimeIndex([f.window_end for f in fs]),
        last_close=np.array([f.last_close for f in fs]),
        realized=np.stack([close[r[2][:horizon]] for r in rows]),
        mean=np.stack([f.mean[:horizon, 3] for f in fs]),
        p_up=np.stack([f.p_up[:horizon] for f in fs]),
        vol=rolling_vol(np.log(np.maximum(close, 1e-12)), [r[1] for r in rows], vol_window),
        samples=samples,
        quantiles={q: np.stack([f.quantiles[q][:horizon] for f in fs]) for q in sorted(levels)})


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaNs when n is 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def correlation(a, b) -> float:
    """Pearson correlation; NaN under 3 cases or no spread."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def rank_correlation(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); NaN under 3 cases or no spread."""
    return correlation(pd.Series(np.asarray(a, float)).rank().to_numpy(),
                       pd.Series(np.asarray(b, float)).rank().to_numpy())


def non_overlapping(keys: Iterable, apart) -> list:
    """The sorted `keys` (bar positions or times) kept at least `apart` after the previous
    kept one: windows whose outcomes do not overlap, so their scores are independent enough
    for a t-statistic."""
    chosen, last = [], None
    for key in keys:
        if last is None or key - last >= apart:
            chosen.append(key)
            last = key
    return chosen


def direction_hits(p_up, last, actual) -> tuple[int, int]:
    """(hits, calls): a call is P(up) > 1/2 (up) or < 1/2 (down); no call at exactly 1/2
    and no case when the close did not move."""
    call = np.sign(np.asarray(p_up, float) - 0.5)
    move = np.sign(np.asarray(actual, float) - np.asarray(last, float))
    used = (call != 0) & (move != 0)
    return int(np.sum(call[used] == move[used])), int(used.sum())


def forecast_crps(y, samples=None, quantiles: dict | None = None, mean=None) -> np.ndarray:
    """CRPS of n forecasts of one step: from sample paths (n, m) when there are any, else
    from stored quantiles {q: (n,)} (2 x the mean pinball loss over the stored levels),
    else the absolute error of the mean."""
    y = np.asarray(y, dtype=np.float64)
    if samples is not None:
        return crps_ensemble(samples, y)
    levels = sorted(quantiles or {})
    if not levels:
        return np.abs(np.asarray(mean, dtype=np.float64) - y)
    loss = [(np.where(y < quantiles[q], 1.0, 0.0) - q) * (quantiles[q] - y) for q in levels]
    return 2 * np.mean(loss, axis=0)


def baseline_crps(y, last, vol, step: int) -> np.ndarray:
    """CRPS of the random walk with rolling-volatility normal bands at `step`."""
    last = np.asarray(last, dtype=np.float64)
    return crps_normal(last, last * np.asarray(vol, dtype=np.float64) * math.sqrt(step), y)


def _model_crps(r: ResolvedForecasts, k: int) -> np.ndarray:
    return forecast_crps(r.realized[:, k], None if r.samples is None else r.samples[:, :, k],
                         {q: v[:, k] for q, v in (r.quantiles or {}).items()}, r.mean[:, k])


def _band(r: ResolvedForecasts, k: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo_q, hi_q = round((1 - level) / 2, 6), round((1 + level) / 2, 6)
    q = r.quantiles or {}
    if lo_q in q and hi_q in q:
        return q[lo_q][:, k], q[hi_q][:, k]
    if r.samples is None:
        raise ValueError(f"no {level:.0%} band: forecasts hold neither sample paths nor quantiles {lo_q}/{hi_q}")
    return central_interval(r.samples[:, :, k], level)


def score_step(r: ResolvedForecasts, step: int) -> dict[str, dict[str, float]]:
    """Scores at one horizon step (1-based): {"model": {...}, "random_walk": {...},
    "random_walk_vol": {...}}; skill scores are pooled: 1 - sum CRPS / sum CRPS(baseline)."""
    k = step - 1
    y, last = r.realized[:, k], r.last_close
    sd = last * r.vol * math.sqrt(step)
    crps = {"model": _model_crps(r, k), "random_walk": np.abs(y - last),
            "random_walk_vol": baseline_crps(y, last, r.vol, step)}
    hits, calls = direction_hits(r.p_up[:, k], last, y)
    lo, hi = wilson_interval(hits, calls)
    model = {"mae": mae(r.mean[:, k], y), "rmse": rmse(r.mean[:, k], y),
             "crps": float(np.mean(crps["model"])),
             "hit_rate": hits / calls if calls else float("nan"), "hit_low": lo, "hit_high": hi, "calls": calls,
             "rank_corr": rank_correlation(r.mean[:, k] / last - 1, y / last - 1)}
    for name in BASELINES:
        denominator = float(np.sum(crps[name]))
        model[f"crps_skill_{name}"] = 1 - float(np.sum(crps["model"])) / denominator if denominator > 0 \
            else float("nan")
    rw = {"mae": mae(last, y), "rmse": rmse(last, y),
          "crps": float(np.mean(crps["random_walk"]))}
    rw_vol = {"mae": rw["mae"], "rmse": rw["rmse"], "crps": float(np.mean(crps["random_walk_vol"]))}
    for level in BAND_LEVELS:
        key = f"coverage_{round(level * 100)}"
        m_lo, m_hi = _band(r, k, level)
        model[key], model[f"width_{round(level * 100)}"] = coverage(m_lo, m_hi, y), float(np.mean(m_hi - m_lo))
        b_lo, b_hi = normal_interval(last, sd, level)
        rw_vol[key], rw_vol[f"width_{round(level * 100)}"] = coverage(b_lo, b_hi, y), float(np.mean(b_hi - b_lo))
    return {"model": model, "random_walk": rw, "random_walk_vol": rw_vol}


def report_steps(horizon: int) -> list[int]:
    """The first, the middle and the last step."""
    return sorted({1, (horizon + 1) // 2, horizon})


@dataclass
class SkillReport:
    """steps[step] = score_step(...) rows; `windows` resolved forecasts from `start` to `end`."""

    windows: int
    horizon: int
    steps: dict[int, dict[str, dict[str, float]]]
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    vol_window: int = 48
    crps_from: str = "samples"
    pending: int = 0  # forecasts whose horizon had not passed (not scored)

    def to_dict(self) -> dict:
        return _clean({"windows": self.windows, "pending": self.pending, "horizon": self.horizon,
                       "start": None if self.start is None else str(self.start),
                       "end": None if self.end is None else str(self.end), "vol_window": self.vol_window,
                       "crps_from": self.crps_from, "steps": {str(s): v for s, v in self.steps.items()}})

    @classmethod
    def from_dict(cls, data: dict) -> "SkillReport":
        return cls(int(data["windows"]), int(data["horizon"]),
                   {int(s): v for s, v in (data.get("steps") or {}).items()},
                   data.get("start"), data.get("end"), int(data.get("vol_window", 48)),
                   data.get("crps_from", "samples"), int(data.get("pending", 0)))

    def verdict(self) -> str:
        """One line: does the model beat the rolling-vol random walk at the last step?"""
        if not self.steps:
            return "No forecast had resolved: no skill measured"
        last = self.steps[max(self.steps)]["model"]
        skill, lo = last.get("crps_skill_random_walk_vol"), last.get("hit_low")
        if skill is None or not np.isfinite(skill):
            return "Forecast skill unknown"
        beat = "beats" if skill > 0 else "does not beat"
        hit = "" if lo is None or not np.isfinite(lo) else \
            f"; direction hit rate {last['hit_rate']:.1%} (95% CI {lo:.1%}-{last['hit_high']:.1%})"
        return (f"At step {max(self.steps)} the model {beat} a random walk with rolling-vol bands "
                f"(CRPS skill {skill:+.3f}){hit}")

    def table(self, title: str | None = None):
        """A rich Table (fits 80 columns): one row per step and forecaster; skill = CRPS skill score."""
        from rich.table import Table

        table = Table(title=title or f"Forecast skill ({self.windows} resolved forecasts; RW = random walk)")
        for key in ("step", "forecaster", "mae", "crps", "skill_rw", "skill_rw_vol", "coverage_50", "coverage_90",
                    "hit_ci", "rank"):
            table.add_column(SCORE_COLUMNS[key], justify="left" if key == "forecaster" else "right")
        for step, rows in self.steps.items():
            m = rows["model"]
            table.add_row(str(step), FORECASTER_SHORT["model"], _f(m["mae"], ".4g"), _f(m["crps"], ".4g"),
                          _f(m["crps_skill_random_walk"], "+.3f"), _f(m["crps_skill_random_walk_vol"], "+.3f"),
                          _f(m["coverage_50"], ".0%"), _f(m["coverage_90"], ".0%"), _hit(m), _f(m["rank_corr"], "+.2f"))
            for name in BASELINES:
                b = rows[name]
                table.add_row("", BASELINE_SHORT[name], _f(b["mae"], ".4g"), _f(b["crps"], ".4g"), "", "",
                              _f(b.get("coverage_50"), ".0%"), _f(b.get("coverage_90"), ".0%"), "", "")
            table.add_section()
        return table


def score_forecasts(resolved: ResolvedForecasts | None, steps: Sequence[int] | None = None,
                    pending: int = 0, vol_window: int = 48) -> SkillReport:
    """Scores at `steps` (default: first, middle, last) of all resolved forecasts."""
    if resolved is None or len(resolved) == 0:
        return SkillReport(0, 0, {}, pending=pending, vol_window=vol_window)
    steps = report_steps(resolved.horizon) if steps is None else list(steps)
    bad = [s for s in steps if not 1 <= s <= resolved.horizon]
    if bad:
        raise ValueError(f"step {bad[0]} is outside the forecast's 1..{resolved.horizon} steps")
    return SkillReport(len(resolved), resolved.horizon, {s: score_step(resolved, s) for s in steps},
                       resolved.times[0], resolved.times[-1], vol_window,
                       "samples" if resolved.samples is not None else "quantiles", pending)


def score_run(forecasts: Iterable[WindowForecast], candles: pd.DataFrame, vol_window: int = 48,
              steps: Sequence[int] | None = None) -> SkillReport:
    """The skill of a run's own forecasts: those whose horizon passed within `candles`."""
    forecasts = list(forecasts)
    resolved = resolve_forecasts(forecasts, candles, vol_window)
    return score_forecasts(resolved, steps, pending=len(forecasts) - (0 if resolved is None else len(resolved)),
                           vol_window=vol_window)


def _f(value, spec: str = ",.2f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _hit(row: dict) -> str:
    if not row.get("calls"):
        return "n/a"
    return f"{row['hit_rate']:.1%} {row['hit_low']:.0%}-{row['hit_high']:.0%}"


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
