"""`kronos-trader evaluate`: walk-forward scores of a Kronos model on held-out candles.

Forecasts every `stride` bars over the last `holdout` of the data (default: the last 20% of
the bundled synthetic sample, which the bundled model never saw) and compares, per horizon,
MAE/RMSE of the close, direction accuracy, CRPS and 50%/90% band coverage with a random
walk (static and rolling volatility), before and after rolling conformal calibration.
Writes a rich table, `evaluation.json` and `evaluation.png` (calibration curves + fan chart).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

_out = Console()
_err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command to the main CLI."""
    app.command("evaluate")(evaluate)


def _parse_horizons(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.replace(" ", "").split(",") if v})
    except ValueError:
        raise ValueError(f"--horizons must be comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise ValueError(f"--horizons must be integers >= 1, got {text!r}")
    return values


def evaluate(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="config.yaml (default: ./config.yaml)"),
    data: Optional[Path] = typer.Option(None, help="CSV/Parquet/Feather candles (default: bundled sample)"),
    model: Optional[str] = typer.Option(None, help="model name or pair directory (default: config, kronos-nano)"),
    holdout: float = typer.Option(0.2, help="last fraction of the data to forecast"),
    horizons: str = typer.Option("1,6,24", help="comma-separated steps ahead to score"),
    lookback: Optional[int] = typer.Option(None, help="history bars per window (default: config)"),
    stride: int = typer.Option(24, help="bars between forecast origins"),
    samples: Optional[int] = typer.Option(None, help="sample paths per forecast (default: config)"),
    seed: Optional[int] = typer.Option(None, help="sampling seed (default: config)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature (default: config)"),
    top_p: Optional[float] = typer.Option(None, help="nucleus sampling threshold (default: config)"),
    vol_window: int = typer.Option(48, help="returns in the rolling-volatility baseline"),
    calibration_level: float = typer.Option(0.9, help="band level the calibration targets"),
    min_history: int = typer.Option(10, help="past outcomes per step before calibration starts"),
    max_windows: Optional[int] = typer.Option(None, help="at most this many windows (the earliest)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps (default: config)"),
    out: Path = typer.Option(Path("reports/evaluation"), help="folder for evaluation.json and evaluation.png"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    refit_every: Optional[str] = typer.Option(None, help="also walk-forward fine-tune: refit every N bars or period "
                                                         "(30D)"),
    train_bars: Optional[int] = typer.Option(None, help="bars before each refit a fold trains on"),
    p_up_calibration: str = typer.Option("isotonic", help="P(up) recalibration scored: isotonic or logistic"),
) -> None:
    """Walk-forward evaluation against random-walk baselines, with calibration before/after."""
    try:
        _evaluate(config, data, model, holdout, horizons, lookback, stride, samples, seed, temperature, top_p,
                  vol_window, calibration_level, min_history, max_windows, device, out, progress, refit_every,
                  train_bars, p_up_calibration)
    except _user_errors() as exc:
        text = str(exc).strip()
        _err.print(f"[red]error:[/red] {text.splitlines()[0] if text else type(exc).__name__}", highlight=False,
                   soft_wrap=True)
        raise typer.Exit(1) from None


def _user_errors() -> tuple[type[BaseException], ...]:
    from kronos import CheckpointError
    from kronos_trader.config import ConfigError
    from kronos_trader.data import CandleDataError

    return CheckpointError, ConfigError, CandleDataError, ValueError, FileNotFoundError


def _evaluate(config, data, model, holdout, horizons, lookback, stride, samples, seed, temperature, top_p, vol_window,
              calibration_level, min_history, max_windows, device, out, progress, refit_every=None,
              train_bars=None, p_up_calibration="isotonic") -> None:
    from kronos_trader.config import load_settings
    from kronos_trader.data import SAMPLE_DATA_PATH, SYNTHETIC_LABEL, is_synthetic, load_candles, titled
    from kronos_trader.evaluation import ScoreSettings, plot_evaluation, run_walk_forward, score_walk_forward
    from kronos_trader.evaluation.calibration_report import plot_calibration, score_p_up
    from kronos_trader.data.naming import series_names
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService

    steps = _parse_horizons(horizons)
    if p_up_calibration not in ("isotonic", "logistic"):
        raise ValueError(f"--p-up-calibration must be isotonic or logistic, got {p_up_calibration!r}")
    if not 0 < calibration_level < 1:
        raise ValueError(f"--calibration-level must be in (0, 1), got {calibration_level}")
    settings = load_settings(config, {"data.path": str(data) if data else None, "model.name": model,
                                      "model.device": device, "forecast.lookback": lookback, "forecast.seed": seed,
                                      "forecast.temperature": temperature, "forecast.top_p": top_p,
                                      "forecast.sample_count": samples, "finetune.refit_every": refit_every,
                                      "finetune.train_bars": train_bars})
    f = settings.forecast
    source = settings.data.path or SAMPLE_DATA_PATH
    candles = load_candles(source)
    symbol, timeframe = series_names(source, candles)
    loaded = load_model(settings.model.name, settings.model.device, settings.model.max_context,
                        settings.model.precision)
    if max(steps) > loaded.max_context:
        raise ValueError(f"horizon {max(steps)} exceeds the model's context of {loaded.max_context}")
    service = ForecastService.from_settings(settings, None, progress, loaded, horizon=max(steps), calibration="none")
    for message in service.warnings:
        _err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
    started = time.perf_counter()
    wf = run_walk_forward(service, candles, holdout=holdout, stride=stride, max_windows=max_windows, symbol=symbol,
                          timeframe=timeframe)
    seconds = time.perf_counter() - started
    ev = score_walk_forward(wf, ScoreSettings(horizons=steps, calibration_level=calibration_level,
                                              min_history=min_history, vol_window=vol_window))
    p_up_report, _ = score_p_up(wf, steps, p_up_calibration, max(30, min_history))
    comparison = None
    if settings.finetune.refit_every is not None:
        comparison = _finetune(service, candles, settings, wf, steps, vol_window, symbol, timeframe, progress)
    ev.meta = {"model": settings.model.name, "model_id": loaded.model_id, "data": str(source),
               "bars": len(candles), "holdout": holdout, "holdout_start": str(candles.index[wf.cut]),
               "lookback": f.lookback, "stride": stride, "samples": f.sample_count, "seed": f.seed,
               "synthetic": is_synthetic(candles), "calendar": settings.data.calendar,
               "stamps_aligned": round(wf.aligned, 4),
               "temperature": f.temperature, "top_p": f.top_p, "top_k": f.top_k, "forecast_seconds": round(seconds, 1),
               "p_up_calibration": p_up_report.to_dict(),
               **({"finetune": comparison.to_dict()} if comparison is not None else {})}
    out.mkdir(parents=True, exist_ok=True)
    json_path = ev.write_json(out / "evaluation.json")
    name = titled(Path(source).name, candles)
    png_path = plot_evaluation(wf, ev, out / "evaluation.png",
                               title=f"{settings.model.name} on {name} (last {holdout:.0%})")
    calibration_png = plot_calibration(p_up_report, out / "calibration.png", title=f"{settings.model.name} on "
                                       f"{name}: P(up) and PIT")
    _out.print(ev.table())
    _out.print(p_up_report.table())
    cov = {m: ev.metrics[m][max(steps)][f"coverage_{round(calibration_level * 100)}"]
           for m in ("kronos", "kronos_calibrated")} if round(calibration_level * 100) in (50, 90) else None
    if cov:
        _out.print(f"{calibration_level:.0%} band coverage at h={max(steps)}: {cov['kronos']:.1%} before calibration, "
                   f"{cov['kronos_calibrated']:.1%} after")
    if comparison is not None:
        _out.print(comparison.table())
        _out.print(comparison.verdict())
    if is_synthetic(candles):
        _out.print(f"note: {Path(source).name} is the bundled {SYNTHETIC_LABEL}", highlight=False)
    _out.print(f"{ev.windows} windows from {candles.index[wf.origins[0]]} in {seconds:.0f}s; wrote {json_path}, "
               f"{png_path} and {calibration_png}")


def _finetune(service, candles, settings, wf, steps, vol_window, symbol, timeframe, progress):
    """Walk-forward fine-tuned forecasts of the same origins, compared with the zero-shot ones."""
    from kronos_trader.evaluation.finetune_report import compare_finetune
    from kronos_trader.forecasting.finetune import build_finetuned

    origins = [int(p) for p in wf.origins]
    tuned = build_finetuned(service, candles, settings.finetune, origins[0], progress)
    zero = service.forecast_at(candles, origins, symbol, timeframe)  # already computed: read from memory
    fine = tuned.forecast_at(candles, origins, symbol, timeframe)
    return compare_finetune(zero, fine, candles, tuned.fold_of, tuned.summary(), steps, vol_window)
