"""Walk-forward evaluation of Kronos forecasts against random-walk baselines.

    from kronos_trader.evaluation import run_walk_forward, score_walk_forward, plot_evaluation
    service = ForecastService.from_settings(settings, calibration="none")  # lookback, horizon, paths, seed
    wf = run_walk_forward(service, candles, holdout=0.2, stride=24)
    ev = score_walk_forward(wf)               # MAE, RMSE, direction, CRPS, band coverage
    ev.write_json("eval.json"); plot_evaluation(wf, ev, "eval.png")
"""
from .metrics import (central_interval, coverage, crps_ensemble, crps_normal, direction_accuracy, mae, normal_interval,
                      normal_ppf, rmse)
from .plots import plot_evaluation
from .report import MODEL_LABELS, MODELS, Evaluation, ScoreSettings, score_walk_forward
from .skill import ResolvedForecasts, SkillReport, resolve_forecasts, score_forecasts, score_step, wilson_interval
from .walkforward import WalkForward, holdout_start, origins, random_walk_sigma, run_walk_forward

__all__ = ["ResolvedForecasts", "SkillReport", "resolve_forecasts", "score_forecasts", "score_step",
           "wilson_interval", "run_walk_forward", "score_walk_forward", "plot_evaluation", "WalkForward", "Evaluation",
           "ScoreSettings",
           "MODELS", "MODEL_LABELS", "origins", "holdout_start", "random_walk_sigma", "mae", "rmse",
           "direction_accuracy", "crps_ensemble", "crps_normal", "central_interval", "normal_interval", "normal_ppf",
           "coverage"]
