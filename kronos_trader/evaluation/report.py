"""Scores of Kronos (raw and calibrated) beside two random-walk baselines, as a table, JSON and PNG."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kronos_trader.data.display import format_significant
from kronos_trader.forecasting.calibration import RollingCalibrator

from .metrics import central_interval, normal_interval
from .skill import FORECASTER_LABELS, FORECASTER_SHORT, SCORE_COLUMNS, ResolvedForecasts, score_step
from .walkforward import WalkForward, random_walk_sigma

__all__ = ["ScoreSettings", "Evaluation", "score_walk_forward", "MODELS", "MODEL_LABELS", "MODEL_SHORT"]

MODELS = ("kronos", "kronos_calibrated", "rw_static", "rw_rolling")
# names from the scorer's one vocabulary (the backtest's skill table uses the same)
_SCORER_NAME = {"kronos": "model", "kronos_calibrated": "model_calibrated", "rw_static": "random_walk_static_vol",
                "rw_rolling": "random_walk_vol"}
MODEL_LABELS = {m: FORECASTER_LABELS[n] for m, n in _SCORER_NAME.items()}
MODEL_SHORT = {m: FORECASTER_SHORT[n] for m, n in _SCORER_NAME.items()}
CURVE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class ScoreSettings:
    horizons: Sequence[int] = (1, 6, 24)
    band_levels: Sequence[float] = (0.5, 0.9)
    calibration_level: float = 0.9
    min_history: int = 10
    vol_window: int = 48
    curve_levels: Sequence[float] = CURVE_LEVELS


@dataclass
class Evaluation:
    """metrics[model][horizon] = {mae, rmse, direction, crps, coverage_50, coverage_90, ...}."""

    metrics: dict[str, dict[int, dict[str, float]]]
    curves: dict[str, list[float]]
    settings: ScoreSettings
    windows: int
    calibration_factors: np.ndarray  # (windows, horizon) factors used for each window
    calibrated_paths: np.ndarray     # (windows, samples, horizon) closes
    sigmas: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.meta,
            "windows": self.windows,
            "settings": _jsonable(asdict(self.settings)),
            "metrics": {m: {str(h): v for h, v in rows.items()} for m, rows in self.metrics.items()},
            "calibration_curve": {"nominal": list(self.settings.curve_levels), **self.curves},
            "calibration_factors_mean_by_step": np.round(self.calibration_factors.mean(axis=0), 4).tolist(),
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(self.to_dict()), indent=2) + "\n")
        return path

    def table(self):
        """A rich Table: one row per horizon and model."""
        from rich.table import Table

        levels = [f"{round(lv * 100)}" for lv in self.settings.band_levels]
        table = Table(title=f"Walk-forward evaluation ({self.windows} windows; RW = random walk)")
        for key in ("step", "forecaster", "mae", "rmse", "hit_rate", "crps"):
            table.add_column(SCORE_COLUMNS[key], justify="left" if key == "forecaster" else "right")
        for lv in levels:
            table.add_column(SCORE_COLUMNS.get(f"coverage_{lv}", f"cov {lv}%"), justify="right")
        for h in self.settings.horizons:
            for m in MODELS:
                row = self.metrics[m][h]
                direction = "n/a" if np.isnan(row["direction"]) else f"{row['direction']:.1%}"
                table.add_row(str(h), MODEL_SHORT[m], format_significant(row["mae"]), format_significant(row["rmse"]),
                              direction, format_significant(row["crps"]),
                              *[f"{row[f'coverage_{lv}']:.1%}" for lv in levels])
            table.add_section()
        return table


def score_walk_forward(wf: WalkForward, settings: ScoreSettings | None = None) -> Evaluation:
    """Score the walk-forward forecasts, their rolling calibration and both baselines with
    the one forecast scorer (`skill.score_step`); calibration curves pool the horizons."""
    s = settings or ScoreSettings()
    bad = [h for h in s.horizons if not 1 <= h <= wf.horizon]
    if bad:
        raise ValueError(f"horizon {bad[0]} is outside the forecast's 1..{wf.horizon} steps")
    calibrator = RollingCalibrator(level=s.calibration_level, min_history=s.min_history)
    known = wf.known_at()
    calibrated, factors = calibrator.run(list(wf.origins), list(wf.paths), list(known), wf.closes)
    calibrated = np.stack(calibrated)
    sigmas = {"rw_static": random_walk_sigma(wf, None), "rw_rolling": random_walk_sigma(wf, s.vol_window)}
    resolved = {"kronos": _resolved(wf, wf.paths, sigmas["rw_rolling"]),
                "kronos_calibrated": _resolved(wf, calibrated, sigmas["rw_rolling"]),
                "rw_static": _resolved(wf, None, sigmas["rw_static"]),
                "rw_rolling": _resolved(wf, None, sigmas["rw_rolling"])}
    metrics: dict[str, dict[int, dict[str, float]]] = {m: {} for m in MODELS}
    for h in s.horizons:
        for m in MODELS:
            rows = score_step(resolved[m], h)
            row = dict(rows["model"] if m.startswith("kronos") else rows["random_walk_vol"])
            row["direction"] = row.get("hit_rate", float("nan"))
            metrics[m][h] = row
    curves = {m: _coverage_curve(resolved[m], s, baseline=not m.startswith("kronos")) for m in MODELS}
    return Evaluation(metrics, curves, s, len(wf.origins), factors, calibrated, sigmas)


def _resolved(wf: WalkForward, closes: np.ndarray | None, vol: np.ndarray) -> ResolvedForecasts:
    """Walk-forward windows in the scorer's form; without paths (a baseline) the samples are
    the last close, which the scorer's model rows then ignore."""
    last = wf.last_close
    samples = np.repeat(last[:, None, None], 2, axis=1) * np.ones((1, 1, wf.horizon)) if closes is None else closes
    return ResolvedForecasts(times=wf.times, last_close=last, realized=wf.realized, mean=samples.mean(axis=1),
                             p_up=(samples > last[:, None, None]).mean(axis=1), vol=vol, samples=samples)


def _coverage_curve(r: ResolvedForecasts, s: ScoreSettings, baseline: bool) -> list[float]:
    """Coverage of central bands at each nominal level, pooled over the scored horizons
    (baselines: their normal bands)."""
    out = []
    for level in s.curve_levels:
        inside = []
        for h in s.horizons:
            y = r.realized[:, h - 1]
            if baseline:
                lo, hi = normal_interval(r.last_close, r.last_close * r.vol * np.sqrt(h), level)
            else:
                lo, hi = central_interval(r.samples[:, :, h - 1], level)
            inside.extend(((y >= lo) & (y <= hi)).tolist())
        out.append(float(np.mean(inside)))
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value
