"""Walk-forward fine-tuning: a model per fold, trained only on bars before the fold.

Every `refit_every` bars (or period, e.g. ``30D``) from the first decision on, a fold
begins; its model is fine-tuned from the base model on the `train_bars` bars strictly
before the fold's first decision bar (the validation split that picks the best step lies
in that span too; windows are normalised on their own look-back as the model does), and
it forecasts every decision of the fold. Nothing from the refit point on is read, so the
data after a cut cannot change any fold model trained before it.

A fold model is stored once, as a `save_pretrained` pair (safetensors) under
`cache_dir/<key>`, the key hashing the base weights, the training rows and the settings;
its weights hash is part of the model id that keys every stored forecast it made, so a
rerun or a resumed run reuses the fold models and their forecasts. A fold whose training
diverges (a non-finite loss) falls back to the previous fold's model and says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import reduce
from pathlib import Path
from typing import Hashable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from kronos import Kronos, KronosPredictor, KronosTokenizer
from kronos.hub import resolve_spec
from kronos.training import TrainConfig, TrainingConfigError, TrainingDataError, export_pair, train_predictor, \
    train_tokenizer, window_starts
from kronos_trader.config import FinetuneSettings
from kronos_trader.data import frame_hash, validate_candles

from .models import LoadedModel, weights_hash
from .progress import stage
from .service import ForecastService
from .values import WindowForecast, WindowRequest

__all__ = ["Fold", "FoldReport", "FinetunedForecasts", "parse_refit_every", "plan_folds", "plan_refits", "fold_key",
           "build_finetuned", "fine_tune_fold", "minimum_train_bars", "training_span", "prune_fold_models",
           "FoldModelGone", "PRUNE_GRACE_S"]

_BARS = re.compile(r"^\s*(\d+)\s*(bars?)?\s*$")
DONE = "fold.json"
#: `finetune.keep_models` never prunes a fold model trained or read back (its fold.json's mtime)
#: within this many seconds: another run sharing `cache_dir` (another process, or the Ray actors
#: that load the fold models their driver trained) may be about to load it.
PRUNE_GRACE_S = 24 * 3600

#: one series, or a portfolio's series by symbol (a fold of a portfolio trains on all of them)
Frames = Union[pd.DataFrame, Mapping[str, pd.DataFrame]]


def _as_panel(candles: Frames) -> dict[str, pd.DataFrame]:
    return dict(candles) if isinstance(candles, Mapping) else {"": candles}


def _clock(panel: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The bar times folds are planned on: the series' own, or every bar of any symbol."""
    frames = list(panel.values())
    return frames[0].index if len(frames) == 1 else reduce(lambda a, b: a.union(b), (f.index for f in frames))


def training_span(candles: Frames, refit: pd.Timestamp, train_bars: int, need: int = 1) -> Frames:
    """The bars a fold refitted at `refit` trains on: each series' last `train_bars` bars
    strictly before it (a portfolio's symbols with fewer than `need` such bars are left out).
    One series, or a portfolio with one symbol left, is a DataFrame: the same fold model as
    a single-symbol run on those bars."""
    parts = {}
    for symbol, frame in _as_panel(candles).items():
        end = int(frame.index.searchsorted(pd.Timestamp(refit), side="left"))
        part = frame.iloc[max(0, end - train_bars):end]
        if len(part) >= need:
            parts[symbol] = part
    if not parts:
        raise ValueError(f"no series has {need} bars before the refit at {refit} to train on")
    return next(iter(parts.values())) if len(parts) == 1 else parts


def parse_refit_every(text: str | int) -> int | pd.Timedelta:
    """A bar count ("500") or a period ("30D", "12h", "2W")."""
    match = _BARS.match(str(text))
    if match:
        bars = int(match.group(1))
        if bars < 1:
            raise ValueError(f"--refit-every must be at least 1 bar, got {text!r}")
        return bars
    try:
        period = pd.Timedelta(str(text).strip())
    except (ValueError, TypeError):
        raise ValueError(f"--refit-every {text!r} is neither a bar count (500) nor a period (30D, 12h)") from None
    if period <= pd.Timedelta(0):
        raise ValueError(f"--refit-every must be a positive period, got {text!r}")
    return period


@dataclass(frozen=True)
class Fold:
    """Decisions at bars [start, end) are made by a model trained on bars [train_start, start)."""

    number: int
    start: int
    end: int
    train_start: int

    @property
    def train_end(self) -> int:
        return self.start


def plan_folds(index: pd.DatetimeIndex, first: int, last: int, every: int | pd.Timedelta, train_bars: int,
               lookback: int, horizon: int, val_fraction: float = 0.2, stride: int = 1) -> list[Fold]:
    """Folds covering the decision bars [first, last]: a refit every `every` bars (or at the
    first bar of each period). One-line errors when the span cannot train a model."""
    if last < first:
        raise ValueError("no decision bars to fine-tune for")
    need = minimum_train_bars(lookback, horizon, val_fraction)
    if train_bars < need:
        raise ValueError(f"--train-bars {train_bars} is too short: lookback {lookback} + horizon {horizon} with a "
                         f"{val_fraction:.0%} validation split needs at least {need} bars")
    if isinstance(every, int):
        starts = list(range(first, last + 1, every))
    else:
        times = index[first:last + 1]
        epoch = pd.Timestamp(0, tz=times.tz)
        period = ((times - epoch) // every).to_numpy()
        starts = [first + int(i) for i in np.flatnonzero(np.r_[True, period[1:] != period[:-1]])]
    if starts[0] < train_bars:
        raise ValueError(f"the first refit at bar {starts[0]} ({index[starts[0]]}) has only {starts[0]} bars before "
                         f"it but --train-bars is {train_bars}: start later or train on fewer bars")
    ends = starts[1:] + [last + 1]
    return [Fold(k, s, e, s - train_bars) for k, (s, e) in enumerate(zip(starts, ends))]


def minimum_train_bars(lookback: int, horizon: int, val_fraction: float) -> int:
    """Fewest bars that give one training window and one validation window."""
    n = lookback + horizon
    while not (len(window_starts(n, lookback, horizon, "train", val_fraction))
               and len(window_starts(n, lookback, horizon, "val", val_fraction))):
        n += 1
    return n


def _settings_key(s: FinetuneSettings, lookback: int, horizon: int) -> dict:
    return {"stage": s.stage, "epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "stride": s.stride,
            "val_fraction": s.val_fraction, "seed": s.seed, "lookback": lookback, "horizon": horizon, "v": 1}


def _rows_hash(frame: pd.DataFrame) -> str:
    return frame_hash(frame.index.as_unit("ns").asi8, frame.to_numpy(dtype=np.float64))


def fold_key(base_id: str, train: Frames, s: FinetuneSettings, lookback: int, horizon: int) -> str:
    """Content key of a fold model: base weights, training rows (of each symbol) and settings."""
    rows = _rows_hash(train) if isinstance(train, pd.DataFrame) else \
        hashlib.sha256(json.dumps({k: _rows_hash(f) for k, f in train.items()}, sort_keys=True).encode()).hexdigest()
    payload = json.dumps({"base": base_id, "rows": rows, **_settings_key(s, lookback, horizon)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _train_config(s: FinetuneSettings, out: Path, bars: Sequence[int], lookback: int, horizon: int, max_context: int,
                  device: str) -> TrainConfig:
    windows = sum(len(window_starts(n, lookback, horizon, "train", s.val_fraction, s.stride)) for n in bars)
    batch = max(1, min(s.batch_size, windows))  # a short span: smaller batches (the fold card records it)
    steps = max(1, int(np.ceil(s.epochs * windows / batch)))
    return TrainConfig(out_dir=out, lookback=lookback, horizon=horizon, max_context=max_context,
                       val_fraction=s.val_fraction, stride=s.stride, val_stride=horizon, batch_size=batch,
                       max_steps=steps, lr=s.lr, warmup_steps=min(50, steps // 10), eval_every=max(1, steps // 4),
                       log_every=max(1, steps // 4), seed=s.seed, device=device, overwrite=True, progress=False)


def fine_tune_fold(base: LoadedModel, train: Frames, s: FinetuneSettings, lookback: int, horizon: int,
                   progress: bool = False) -> tuple[Path, bool]:
    """The stored fold model for `train` (one series, or a portfolio's by symbol: one model
    trained on all of them), trained now unless stored: (pair directory, trained now).
    Raises TrainingConfigError when the loss diverges."""
    key = fold_key(base.model_id, train, s, lookback, horizon)
    target = Path(s.cache_dir) / key[:32]
    if (target / DONE).is_file():
        try:
            os.utime(target / DONE)  # read back: recently used (prune_fold_models keeps the newest)
        except OSError:  # a read-only store of fold models: nothing is pruned there either
            pass
        return target, False
    frames = list(_as_panel(train).values())
    names = None if isinstance(train, pd.DataFrame) else list(train)
    device = str(base.predictor.device)
    spec = resolve_spec(base.name)  # fresh float32 modules: the loaded ones may be packed for inference
    tokenizer, model = KronosTokenizer.from_pretrained(spec.tokenizer), Kronos.from_pretrained(spec.model)
    Path(s.cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=s.cache_dir, prefix=".train-") as work:
        work = Path(work)
        config = _train_config(s, work / "predictor", [len(f) for f in frames], lookback, horizon, base.max_context,
                               device)
        config.progress = progress
        data = train if isinstance(train, pd.DataFrame) else frames
        if s.stage == "both":
            tok_config = TrainConfig(**{**config.__dict__, "out_dir": work / "tokenizer"})
            tokenizer = train_tokenizer(data, tok_config, init=tokenizer, names=names).best_dir
        result = train_predictor(data, tokenizer, config, init=model, names=names)
        staging = work / "pair"
        export_pair(tokenizer, result.best_dir, staging, base.max_context)
        (staging / DONE).write_text(json.dumps({"key": key, "base": base.model_id, "bars": sum(map(len, frames)),
                                                **({"symbols": names} if names else {}),
                                                "first": str(min(f.index[0] for f in frames)),
                                                "last": str(max(f.index[-1] for f in frames)),
                                                "best_val_loss": result.best_val_loss, "best_step": result.best_step,
                                                "steps": result.step, "batch_size": config.batch_size,
                                                "seconds": round(result.elapsed_s, 2),
                                                "settings": _settings_key(s, lookback, horizon)}, indent=2))
        if target.exists():  # a half-written folder of a killed run (or one being pruned)
            shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target, True


class FoldModelGone(ValueError):
    """A fold model was deleted (by another run's `keep_models` pruning) before it was loaded."""


def _load_fold(base: LoadedModel, directory: Path) -> tuple[LoadedModel, dict]:
    """The stored fold model and its card, marked used now (so no run prunes it for
    PRUNE_GRACE_S); FoldModelGone, in one line, when its folder was deleted first."""
    directory = Path(directory)
    try:
        try:
            os.utime(directory / DONE)
        except FileNotFoundError:
            raise
        except OSError:  # a read-only store of fold models: nothing is pruned there either
            pass
        predictor = KronosPredictor.from_pretrained(str(directory), device=base.predictor.device,
                                                    precision=base.precision)
        card = json.loads((directory / DONE).read_text())
    except Exception:
        if (directory / DONE).is_file():  # pruning removes the card first
            raise
        raise FoldModelGone(f"fold model {directory} was deleted before it was loaded (finetune.keep_models of "
                            f"another run sharing {directory.parent}?): run again, it is trained again") from None
    predictor.max_context = base.max_context
    ident = weights_hash(predictor)[:16]
    return LoadedModel(predictor, f"{base.name}+fold", f"{base.model_id}+ft@{ident}", base.trained_window), card


@dataclass
class FoldReport:
    """What happened in one fold (for the report and summary.json)."""

    number: int
    start: str
    end: str
    train_first: str
    train_last: str
    model_id: str
    trained: bool = False
    fallback: str | None = None  # why the previous model was used
    best_val_loss: float | None = None
    seconds: float | None = None  # training time (when it was trained, not read back)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FinetunedForecasts:
    """A ForecastService whose decisions come from each fold's fine-tuned model.

    It answers `forecast_at`/`forecast_many`/`forecast_series` like a ForecastService
    (the backtest, `evaluate` and the lookahead check call it unchanged): a request goes to
    the fold its window end falls in, found by time, so any slice of the series works. For a
    portfolio `candles` holds every symbol's bars: a fold's one model is trained on all of
    them and forecasts each symbol.

    `plan` (from another process's `resolved()`) gives each fold's stored model directory
    and report: nothing is trained, and a base model that is only an identity (a sweep
    trial on Ray, which reads stored forecasts) gets the fold model's identity.
    """

    base: ForecastService
    candles: Frames
    folds: list[Fold]
    finetune: FinetuneSettings
    progress: bool = False
    reports: dict[int, FoldReport] = field(default_factory=dict)
    plan: dict[int, tuple[str | None, dict]] | None = None
    _services: dict[int, ForecastService] = field(default_factory=dict)
    _dirs: dict[int, str | None] = field(default_factory=dict)  # each fold's model directory (None: the base)

    def __post_init__(self) -> None:
        self.panel = {k: validate_candles(v, f"fine-tuning data {k}".strip()) for k, v in _as_panel(self.candles).items()}
        self.clock = _clock(self.panel)
        self._starts = self.clock[[f.start for f in self.folds]]
        if self.plan is not None:
            self.plan = {int(k): (d, dict(r)) for k, (d, r) in self.plan.items()}

    # the ForecastService surface the callers use
    @property
    def settings(self):
        return self.base.settings

    @property
    def model(self) -> LoadedModel:
        return self.base.model

    @property
    def warnings(self) -> list[str]:
        return self.base.warnings

    @property
    def store(self):
        return self.base.store

    @property
    def calendar(self) -> str:
        return self.base.calendar

    @property
    def settings_hash(self) -> str:
        return self.base.settings_hash

    def _distinct(self) -> list[ForecastService]:
        """The base service and each fold's (a fallback fold shares an earlier one)."""
        return list({id(s): s for s in (self.base, *self._services.values())}.values())

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self._distinct())

    @property
    def reused(self) -> int:
        return sum(s.reused for s in self._distinct())

    def decision_positions(self, n_bars: int, first: int | None = None) -> list[int]:
        return self.base.decision_positions(n_bars, first)

    def forecast_at(self, candles: pd.DataFrame, positions: Sequence[int], symbol: str, timeframe: str,
                    interval: pd.Timedelta | None = None) -> dict[int, WindowForecast]:
        return ForecastService.forecast_at(self, candles, positions, symbol, timeframe, interval)

    def forecast_series(self, candles: pd.DataFrame, symbol: str, timeframe: str,
                        first: int | None = None) -> dict[int, WindowForecast]:
        return self.forecast_at(candles, self.decision_positions(len(candles), first), symbol, timeframe)

    def forecast_many(self, requests: Sequence[WindowRequest]) -> dict[Hashable, WindowForecast]:
        groups: dict[int, list[WindowRequest]] = {}
        for r in requests:
            groups.setdefault(self.fold_of(r.candles.index[r.position]), []).append(r)
        out: dict[Hashable, WindowForecast] = {}
        for number in sorted(groups):
            service = self.base if number < 0 else self.service(number)
            out.update(service.forecast_many(groups[number]))
        return out

    def fold_of(self, bar_time: pd.Timestamp) -> int:
        """The fold deciding at `bar_time` (-1 before the first refit: the base model)."""
        return int(self._starts.searchsorted(pd.Timestamp(bar_time), side="right")) - 1

    def _announce(self, text: str) -> None:
        """The walk-forward's overall progress, a line per fold ("fold k of n")."""
        stage(self.progress, f"fold {text}", soft_wrap=True)

    def service(self, number: int) -> ForecastService:
        """The fold's forecast service, its model trained (or read back) on first use; a
        diverged fold uses the previous fold's model."""
        if number in self._services:
            return self._services[number]
        if self.plan is not None:
            return self._planned(number)
        fold = self.folds[number]
        refit = self.clock[fold.start]
        need = minimum_train_bars(self.settings.lookback, self.settings.horizon, self.finetune.val_fraction)
        train = training_span(self.panel, refit, self.finetune.train_bars, need)
        frames = list(_as_panel(train).values())
        report = FoldReport(number, str(refit), str(self.clock[fold.end - 1]),
                            str(min(f.index[0] for f in frames)), str(max(f.index[-1] for f in frames)), "")
        where = f"{number + 1} of {len(self.folds)} (decides from {refit})"
        self._announce(f"{where}: fine-tuning on {sum(map(len, frames))} bars"
                       + (f" of {len(frames)} symbols" if len(frames) > 1 else ""))

        def fit() -> tuple[Path, bool]:
            return fine_tune_fold(self.base.model, train, self.finetune, self.settings.lookback,
                                  self.settings.horizon, self.progress)

        try:
            directory, trained = fit()
            try:
                loaded, card = _load_fold(self.base.model, directory)
            except FoldModelGone:  # another run pruned it in between: trained again (same key, same folder)
                directory, trained = fit()
                loaded, card = _load_fold(self.base.model, directory)
            report.trained, report.best_val_loss = trained, card.get("best_val_loss")
            report.seconds = card.get("seconds")
            service = ForecastService(loaded, self.settings, self.base.store, self.progress, self.base.calendar)
            self._dirs[number] = str(directory.resolve())
            self._announce(f"{where}: " + (f"trained in {report.seconds:.0f} s" if trained else "read back"))
            if trained and self.finetune.keep_models is not None:
                prune_fold_models(self.finetune.cache_dir, self.finetune.keep_models,
                                  {Path(d) for d in self._dirs.values() if d})
        except (TrainingConfigError, TrainingDataError) as exc:
            previous = self.service(number - 1) if number > 0 else self.base
            report.fallback = f"{str(exc).splitlines()[0]}: fold {number} uses " + \
                (f"fold {number - 1}'s model" if number > 0 else "the base model")
            self._dirs[number] = self._dirs.get(number - 1)
            self._announce(f"{where}: {report.fallback}")
            service = previous
        report.model_id = service.model.model_id
        self.reports[number] = report
        self._services[number] = service
        return service

    def _planned(self, number: int) -> ForecastService:
        """The fold's service from `plan`: its stored model (or, for a weightless identity of
        the base model, the fold model's identity); folds sharing a model share a service."""
        directory, report = self.plan[number]
        self.reports[number] = FoldReport(**report)
        same = next((k for k, d in self._dirs.items() if d == directory and k in self._services), None)
        if directory is None:
            service = self.base
        elif same is not None:
            service = self._services[same]
        else:
            model = self.base.model
            model = _load_fold(model, Path(directory))[0] if isinstance(model, LoadedModel) else \
                replace(model, name=f"{model.name}+fold", model_id=report["model_id"])
            service = ForecastService(model, self.settings, self.base.store, self.progress, self.base.calendar)
        self._dirs[number] = directory
        self._services[number] = service
        return service

    def resolved(self) -> dict[int, tuple[str | None, dict]]:
        """Every fold trained (or read back) now: each fold's model directory (None: the base
        model) and report, all another process needs to forecast with the same fold models
        without training any (see `plan`)."""
        for number in range(len(self.folds)):
            self.service(number)
        return {k: (self._dirs[k], self.reports[k].to_dict()) for k in range(len(self.folds))}

    def summary(self) -> list[dict]:
        return [self.reports[k].to_dict() for k in sorted(self.reports)]


def _used_at(directory: Path) -> float | None:
    """When a fold model was last trained or read back (None: gone meanwhile)."""
    try:
        return (directory / DONE).stat().st_mtime
    except OSError:
        return None


def prune_fold_models(cache_dir: str | Path, keep: int, protect: set[Path] = frozenset(),
                      grace_s: float = PRUNE_GRACE_S) -> list[Path]:
    """Delete the least recently used fold models of `cache_dir` (a fold model read back counts
    as used) beyond the newest `keep` in total. Those in `protect` (the running walk-forward's)
    and those used within the last `grace_s` seconds (another run may be about to load them)
    count towards `keep` and are never deleted. Returns what was deleted."""
    root = Path(cache_dir)
    used = {d: _used_at(d) for d in root.iterdir()} if root.is_dir() else {}
    stored = sorted((d for d, t in used.items() if t is not None), key=used.__getitem__, reverse=True)
    protect = {Path(p).resolve() for p in protect}
    recent = time.time() - grace_s
    spared = {d for d in stored if d.resolve() in protect or used[d] > recent}
    kept = len(spared)
    removed = []
    for d in stored:
        if d in spared:
            continue
        if kept < keep:
            kept += 1
            continue
        again = _used_at(d)  # read back since it was listed, or pruned by another run
        if again is None or again > recent:
            continue
        try:
            (d / DONE).unlink()  # the card first: a run loading it now knows it is gone, not broken
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def plan_refits(candles: Frames, finetune: FinetuneSettings, first: int, lookback: int,
                horizon: int) -> list[Fold]:
    """The folds for the decisions at bars `first`.. of `candles` (for a portfolio, of each
    symbol's series, folds planned on every symbol's bar times): the first refit is the first
    of those bars with `train_bars` bars before it (of some symbol; earlier decisions use the
    base model). Cheap, so callers check a plan in one line before anything is computed or
    trained."""
    if finetune.refit_every is None:
        raise ValueError("finetune.refit_every is not set (--refit-every N or a period such as 30D)")
    every = parse_refit_every(finetune.refit_every)
    panel = _as_panel(candles)
    clock = _clock(panel)
    if len(panel) == 1:
        start = max(first, finetune.train_bars)
    else:
        decide = [f.index[first] for f in panel.values() if len(f) > first]
        trained = [f.index[finetune.train_bars] for f in panel.values() if len(f) > finetune.train_bars]
        start = int(clock.searchsorted(max(min(decide), min(trained)))) if decide and trained else len(clock)
    if start >= len(clock):
        longest = max(len(f) for f in panel.values())
        raise ValueError(f"--train-bars {finetune.train_bars} leaves no bar to decide: the "
                         f"{'longest ' if len(panel) > 1 else ''}series has {longest} bars")
    return plan_folds(clock, start, len(clock) - 1, every, finetune.train_bars, lookback, horizon,
                      finetune.val_fraction, finetune.stride)


def build_finetuned(service: ForecastService, candles: Frames, finetune: FinetuneSettings, first: int | None = None,
                    progress: bool = False, plan: dict | None = None) -> FinetunedForecasts:
    """`service` with walk-forward fine-tuning for the decisions at bars `first`.. of `candles`
    (of each symbol's for a portfolio; default: the service's first decision bar)."""
    if first is None:
        first = service.decision_positions(max(len(f) for f in _as_panel(candles).values()))[0]
    folds = plan_refits(candles, finetune, first, service.settings.lookback, service.settings.horizon)
    return FinetunedForecasts(service, candles, folds, finetune, progress, plan=plan)
