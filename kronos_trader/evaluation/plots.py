"""The evaluation figure: calibration curves (nominal vs empirical coverage) and a fan chart."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import MODEL_LABELS, MODELS, Evaluation
from .skill import FORECASTER_LABELS
from .walkforward import WalkForward

__all__ = ["plot_evaluation"]

COLORS = {"kronos": "tab:blue", "kronos_calibrated": "tab:green", "rw_static": "tab:gray", "rw_rolling": "tab:orange"}


def plot_evaluation(wf: WalkForward, evaluation: Evaluation, path: str | Path, example: int | None = None,
                    context_bars: int = 72, title: str = "") -> Path:
    """Write a PNG: left, coverage of central bands at each nominal level (pooled over the
    evaluated horizons); right, one window's history, outcome and Kronos bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_cal, ax_fan) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.6]})
    nominal = np.asarray(evaluation.settings.curve_levels)
    ax_cal.plot([0, 1], [0, 1], color="black", lw=1, ls=":", label="ideal")
    for m in MODELS:
        ax_cal.plot(nominal, evaluation.curves[m], marker="o", ms=3, color=COLORS[m], label=MODEL_LABELS[m])
    ax_cal.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage of central band",
               ylabel="empirical coverage", title="Calibration (horizons " +
               ", ".join(map(str, evaluation.settings.horizons)) + ")")
    ax_cal.grid(alpha=0.3)
    ax_cal.legend(loc="upper left", fontsize=8)

    k = len(wf.origins) // 2 if example is None else example
    p, horizon = int(wf.origins[k]), wf.horizon
    closes = wf.closes.to_numpy()
    hist_x = np.arange(p - context_bars + 1, p + 1)
    fut_x = np.arange(p + 1, p + 1 + horizon)
    ax_fan.plot(hist_x, closes[hist_x], color="black", lw=1.2, label="history")
    ax_fan.plot(fut_x, wf.realized[k], color="black", lw=1.2, ls="--", label="realised")
    for paths, color, name in ((wf.paths[k], COLORS["kronos"], "Kronos"),
                               (evaluation.calibrated_paths[k], COLORS["kronos_calibrated"], "calibrated")):
        c = paths
        q05, q25, q50, q75, q95 = np.quantile(c, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax_fan.fill_between(fut_x, q05, q95, color=color, alpha=0.15, label=f"{name} 90%")
        ax_fan.fill_between(fut_x, q25, q75, color=color, alpha=0.3, label=f"{name} 50%")
        ax_fan.plot(fut_x, q50, color=color, lw=1.2, label=f"{name} median")
    sd = wf.last_close[k] * evaluation.sigmas["rw_rolling"][k] * np.sqrt(np.arange(1, horizon + 1))
    ax_fan.plot(fut_x, wf.last_close[k] + 1.645 * sd, color=COLORS["rw_rolling"], lw=1, ls="-.",
                label=f"{FORECASTER_LABELS['random_walk_vol']} 90%")
    ax_fan.plot(fut_x, wf.last_close[k] - 1.645 * sd, color=COLORS["rw_rolling"], lw=1, ls="-.")
    ax_fan.axvline(p + 0.5, color="gray", lw=0.8)
    ax_fan.set(title=f"Example forecast from {wf.times[k]:%Y-%m-%d %H:%M}", xlabel="bar", ylabel="close")
    ax_fan.grid(alpha=0.3)
    ax_fan.legend(loc="upper left", fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
