"""How far P(up) and the path distribution can be trusted: reliability, PIT, Brier, ECE.

P(up) is scored before and after walk-forward recalibration (`forecasting.pup_calibration`):
the Brier score, its skill against climatology (the base rate of up moves, itself
walk-forward: the share of up moves among outcomes known at each forecast, 1/2 before
any), the expected calibration error (10 equal-width bins, weighted by their counts) and a
reliability diagram. The PIT of the realised close (share of sample paths below it, ties
split at random with a fixed seed) is uniform for a calibrated distribution; its
histogram shows bands that are too narrow (a U) or too wide (a hump).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from kronos_trader.forecasting.pup_calibration import rolling_recalibrate
from kronos_trader.forecasting.values import prob_up

from .skill import _clean, _f, report_steps, target_positions
from .walkforward import WalkForward

__all__ = ["brier", "expected_calibration_error", "reliability", "pit_values", "running_base_rate",
           "PUpCalibration", "score_p_up", "score_p_up_forecasts", "score_p_up_arrays", "plot_calibration"]

BINS = 10


def brier(p, up) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(up, float)) ** 2))


def reliability(p, up, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of P(up): mean P(up), frequency of up moves, count (NaN if empty)."""
    p, up = np.asarray(p, float), np.asarray(up, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, p, bins) / count
        freq = np.bincount(which, up, bins) / count
    return mean_p, freq, count


def expected_calibration_error(p, up, bins: int = BINS) -> float:
    mean_p, freq, count = reliability(p, up, bins)
    used = count > 0
    return float(np.sum(np.abs(mean_p[used] - freq[used]) * count[used]) / max(count.sum(), 1))


def pit_values(paths: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """PIT of each outcome y[i] under its sample paths[i] (n, m): randomised for ties."""
    paths, y = np.asarray(paths, float), np.asarray(y, float)
    below = (paths < y[:, None]).mean(axis=1)
    equal = (paths == y[:, None]).mean(axis=1)
    return below + equal * np.random.default_rng(seed).random(len(y))


def running_base_rate(made_at, up, known_at) -> np.ndarray:
    """Climatology per forecast and step: share of up moves among outcomes known by then."""
    made, up, known = (np.asarray(v, float) for v in (made_at, up, known_at))
    out = np.full(up.shape, 0.5)
    for h in range(up.shape[1]):  # outcomes known by made[i] are a prefix of those sorted by known time
        order = np.argsort(known[:, h], kind="stable")
        seen = np.searchsorted(known[order, h], made, side="right")
        ups = np.r_[0.0, np.cumsum(up[order, h])]
        out[:, h] = np.where(seen > 0, ups[seen] / np.maximum(seen, 1), 0.5)
    return out


@dataclass
class PUpCalibration:
    """steps[h] = {brier_raw, brier_recalibrated, brier_climatology, bss_raw, bss_recalibrated,
    ece_raw, ece_recalibrated, base_rate}; reliability and PIT histograms per step."""

    kind: str
    steps: dict[int, dict[str, float]]
    reliability: dict[int, dict[str, list]] = field(default_factory=dict)
    pit: dict[int, list[int]] = field(default_factory=dict)
    windows: int = 0

    def to_dict(self) -> dict:
        return _clean({"kind": self.kind, "windows": self.windows, "steps": {str(h): v for h, v in self.steps.items()},
                       "reliability": {str(h): v for h, v in self.reliability.items()},
                       "pit_histogram": {str(h): v for h, v in self.pit.items()}})

    def table(self):
        from rich.table import Table

        table = Table(title=f"P(up) before/after {self.kind} recalibration ({self.windows} windows; "
                            f"BSS = Brier skill vs climatology)")
        for col in ("step", "Brier raw", "Brier recal.", "BSS raw", "BSS recal.", "ECE raw", "ECE recal."):
            table.add_column(col, justify="right")
        for h, row in self.steps.items():
            table.add_row(str(h), _f(row["brier_raw"], ".4f"), _f(row["brier_recalibrated"], ".4f"),
                          _f(row["bss_raw"], "+.3f"), _f(row["bss_recalibrated"], "+.3f"),
                          _f(row["ece_raw"], ".3f"), _f(row["ece_recalibrated"], ".3f"))
        return table


def score_p_up(wf: WalkForward, steps: Sequence[int], kind: str = "isotonic", min_history: int = 30,
               p_up: np.ndarray | None = None) -> tuple[PUpCalibration, np.ndarray]:
    """Scores of the walk-forward forecasts' P(up) (default: the share of paths above the
    last close, ties half) before and after recalibration; returns them and the recalibrated
    P(up) (windows, horizon)."""
    if p_up is None:
        p_up = prob_up(wf.paths, wf.last_close[:, None, None])
    return score_p_up_arrays(wf.origins, p_up, wf.realized, wf.last_close, wf.known_at(), wf.paths, steps, kind,
                             min_history)


def score_p_up_forecasts(forecasts, candles, steps: Sequence[int] | None = None, kind: str = "isotonic",
                         min_history: int = 30) -> PUpCalibration | None:
    """The same for a run's forecasts whose targets are in `candles`, from their sample paths
    (the model's own P(up)): an outcome counts as known once its target bar has closed."""
    index = candles.index
    close = candles["close"].to_numpy(dtype=np.float64)
    rows = []
    for f in sorted(forecasts, key=lambda f: f.window_end):
        origin = int(index.get_indexer([f.bar_open])[0])
        pos = target_positions(index, origin, f)
        if pos is not None and (pos >= 0).all() and f.close_paths is not None:
            rows.append((origin, pos, f))
    if len(rows) < 2:
        return None
    horizon = min(len(r[1]) for r in rows)
    if len({r[2].close_paths.shape[0] for r in rows}) != 1:
        return None
    origins = np.array([r[0] for r in rows])
    known = np.stack([r[1][:horizon] for r in rows])
    paths = np.stack([r[2].close_paths[:, :horizon] for r in rows])
    steps = report_steps(horizon) if steps is None else [s for s in steps if s <= horizon]
    last = np.array([r[2].last_close for r in rows])
    model_p = prob_up(paths, last[:, None, None])  # the model's own, from its paths
    report, _ = score_p_up_arrays(origins, model_p, close[known], last, known, paths, steps, kind, min_history)
    return report


def score_p_up_arrays(made_at, p_up: np.ndarray, realized: np.ndarray, last_close: np.ndarray, known: np.ndarray,
                      paths: np.ndarray, steps: Sequence[int], kind: str, min_history: int
                      ) -> tuple[PUpCalibration, np.ndarray]:
    """P(up) scores of n forecasts: `p_up` and `realized` (n, H), `paths` (n, m, H), `known`
    (n, H) when each outcome is known, in the units of `made_at`."""
    up = (realized > last_close[:, None]).astype(float)
    recal = rolling_recalibrate(made_at, p_up, up, known, kind, min_history)
    clim = running_base_rate(made_at, up, known)
    out, rel, pit = {}, {}, {}
    for h in steps:
        k = h - 1
        b_clim = brier(clim[:, k], up[:, k])
        row = {"base_rate": float(up[:, k].mean()), "brier_climatology": b_clim}
        for name, p in (("raw", p_up[:, k]), ("recalibrated", recal[:, k])):
            b = brier(p, up[:, k])
            row[f"brier_{name}"] = b
            row[f"bss_{name}"] = 1 - b / b_clim if b_clim > 0 else float("nan")
            row[f"ece_{name}"] = expected_calibration_error(p, up[:, k])
            mean_p, freq, count = reliability(p, up[:, k])
            rel.setdefault(h, {})[name] = {"mean_p": mean_p.tolist(), "frequency": freq.tolist(),
                                           "count": count.astype(int).tolist()}
        out[h] = row
        pit[h] = np.histogram(pit_values(paths[:, :, k], realized[:, k]), bins=BINS, range=(0, 1))[0].tolist()
    return PUpCalibration(kind, out, rel, pit, len(made_at)), recal


def plot_calibration(report: PUpCalibration, path: str | Path, title: str = "") -> Path:
    """Reliability diagram (before/after) and PIT histogram of the close at the last step, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = max(report.steps)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfect")
    for name, color in (("raw", "tab:blue"), ("recalibrated", "tab:green")):
        r = report.reliability[h][name]
        mean_p, freq = np.array(r["mean_p"], float), np.array(r["frequency"], float)
        ok = ~np.isnan(mean_p)
        left.plot(mean_p[ok], freq[ok], marker="o", color=color,
                  label=f"{name} (ECE {report.steps[h][f'ece_{name}']:.3f})")
    left.set(xlabel="P(up)", ylabel="frequency of up moves", xlim=(0, 1), ylim=(0, 1),
             title=f"Reliability of P(up), step {h}")
    left.legend(loc="upper left")
    counts = np.array(report.pit[h], float)
    right.bar(np.arange(BINS) / BINS, counts, width=1 / BINS, align="edge", color="tab:blue", edgecolor="white")
    right.axhline(counts.sum() / BINS, color="gray", linestyle=":", label="uniform (calibrated)")
    right.set(xlabel="PIT of the realised close", ylabel="windows", title=f"PIT histogram, step {h}")
    right.legend(loc="upper center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
