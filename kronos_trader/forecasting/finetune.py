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
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

from kronos import Kronos, KronosPredictor, KronosTokenizer
from kronos.hub import resolve_spec
from kronos.training import TrainConfig, TrainingConfigError, TrainingDataError, export_pair, train_predictor, \
    train_tokenizer, window_starts
from kronos_trader.config import FinetuneSettings
from kronos_trader.data import frame_hash, validate_candles

from .models import LoadedModel, weights_hash
from .service import ForecastService
from .values import WindowForecast, WindowRequest

__all__ = ["Fold", "FoldReport", "FinetunedForecasts", "parse_refit_every", "plan_folds", "plan_refits", "fold_key", "build_finetuned",
           "fine_tune_fold", "minimum_train_bars"]

_BARS = re.compile(r"^\s*(\d+)\s*(bars?)?\s*$")
DONE = "fold.json"


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


def fold_key(base_id: str, train: pd.DataFrame, s: FinetuneSettings, lookback: int, horizon: int) -> str:
    """Content key of a fold model: base weights, training rows and settings."""
    rows = frame_hash(train.index.as_unit("ns").asi8, train.to_numpy(dtype=np.float64))
    payload = json.dumps({"base": base_id, "rows": rows, **_settings_key(s, lookback, horizon)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _train_config(s: FinetuneSettings, out: Path, bars: int, lookback: int, horizon: int, max_context: int,
                  device: str) -> TrainConfig:
    windows = len(window_starts(bars, lookback, horizon, "train", s.val_fraction, s.stride))
    batch = max(1, min(s.batch_size, windows))  # a short span: smaller batches (the fold card records it)
    steps = max(1, int(np.ceil(s.epochs * windows / batch)))
    return TrainConfig(out_dir=out, lookback=lookback, horizon=horizon, max_context=max_context,
                       val_fraction=s.val_fraction, stride=s.stride, val_stride=horizon, batch_size=batch,
                       max_steps=steps, lr=s.lr, warmup_steps=min(50, steps // 10), eval_every=max(1, steps // 4),
                       log_every=max(1, steps // 4), seed=s.seed, device=device, overwrite=True, progress=False)


def fine_tune_fold(base: LoadedModel, train: pd.DataFrame, s: FinetuneSettings, lookback: int, horizon: int,
                   progress: bool = False) -> tuple[Path, bool]:
    """The stored fold model for `train` (trained now unless stored): (pair directory,
    trained now). Raises TrainingConfigError when the loss diverges."""
    key = fold_key(base.model_id, train, s, lookback, horizon)
    target = Path(s.cache_dir) / key[:32]
    if (target / DONE).is_file():
        return target, False
    device = str(base.predictor.device)
    spec = resolve_spec(base.name)  # fresh float32 modules: the loaded ones may be packed for inference
    tokenizer, model = KronosTokenizer.from_pretrained(spec.tokenizer), Kronos.from_pretrained(spec.model)
    Path(s.cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=s.cache_dir, prefix=".train-") as work:
        work = Path(work)
        config = _train_config(s, work / "predictor", len(train), lookback, horizon, base.max_context, device)
        config.progress = progress
        if s.stage == "both":
            tok_config = TrainConfig(**{**config.__dict__, "out_dir": work / "tokenizer"})
            tokenizer = train_tokenizer(train, tok_config, init=tokenizer).best_dir
        result = train_predictor(train, tokenizer, config, init=model)
        staging = work / "pair"
        export_pair(tokenizer, result.best_dir, staging, base.max_context)
        (staging / DONE).write_text(json.dumps({"key": key, "base": base.model_id, "bars": len(train),
                                                "first": str(train.index[0]), "last": str(train.index[-1]),
                                                "best_val_loss": result.best_val_loss, "best_step": result.best_step,
                                                "steps": result.step, "batch_size": config.batch_size,
                                                "seconds": round(result.elapsed_s, 2),
                                                "settings": _settings_key(s, lookback, horizon)}, indent=2))
        if target.exists():  # a half-written folder of a killed run
            shutil.rmtree(target)
        staging.rename(target)
    return target, True


def _load_fold(base: LoadedModel, directory: Path) -> LoadedModel:
    predictor = KronosPredictor.from_pretrained(str(directory), device=base.predictor.device, precision=base.precision)
    predictor.max_context = base.max_context
    ident = weights_hash(predictor)[:16]
    return LoadedModel(predictor, f"{base.name}+fold", f"{base.model_id}+ft@{ident}", base.trained_window)


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
    the fold its window end falls in, found by time, so any slice of the series works.
    """

    base: ForecastService
    candles: pd.DataFrame
    folds: list[Fold]
    finetune: FinetuneSettings
    progress: bool = False
    reports: dict[int, FoldReport] = field(default_factory=dict)
    _services: dict[int, ForecastService] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.candles = validate_candles(self.candles, "fine-tuning data")
        self._starts = self.candles.index[[f.start for f in self.folds]]

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

    def service(self, number: int) -> ForecastService:
        """The fold's forecast service, its model trained (or read back) on first use; a
        diverged fold uses the previous fold's model."""
        if number in self._services:
            return self._services[number]
        fold = self.folds[number]
        train = self.candles.iloc[fold.train_start:fold.train_end]
        index = self.candles.index
        report = FoldReport(number, str(index[fold.start]), str(index[fold.end - 1]), str(train.index[0]),
                            str(train.index[-1]), "")
        try:
            directory, trained = fine_tune_fold(self.base.model, train, self.finetune, self.settings.lookback,
                                                self.settings.horizon, self.progress)
            loaded = _load_fold(self.base.model, directory)
            card = json.loads((directory / DONE).read_text())
            report.trained, report.best_val_loss = trained, card.get("best_val_loss")
            report.seconds = card.get("seconds")
            service = ForecastService(loaded, self.settings, self.base.store, self.progress, self.base.calendar)
        except (TrainingConfigError, TrainingDataError) as exc:
            previous = self.service(number - 1) if number > 0 else self.base
            report.fallback = f"{str(exc).splitlines()[0]}: fold {number} uses " + \
                (f"fold {number - 1}'s model" if number > 0 else "the base model")
            service = previous
        report.model_id = service.model.model_id
        self.reports[number] = report
        self._services[number] = service
        return service

    def summary(self) -> list[dict]:
        return [self.reports[k].to_dict() for k in sorted(self.reports)]



def plan_refits(candles: pd.DataFrame, finetune: FinetuneSettings, first: int, lookback: int,
                horizon: int) -> list[Fold]:
    """The folds for the decisions at bars `first`.. of `candles`: the first refit is the first
    of those bars with `train_bars` bars before it (earlier decisions use the base model).
    Cheap, so callers check a plan in one line before anything is computed or trained."""
    if finetune.refit_every is None:
        raise ValueError("finetune.refit_every is not set (--refit-every N or a period such as 30D)")
    every = parse_refit_every(finetune.refit_every)
    start = max(first, finetune.train_bars)
    if start >= len(candles):
        raise ValueError(f"--train-bars {finetune.train_bars} leaves no bar to decide: the series has "
                         f"{len(candles)} bars")
    return plan_folds(candles.index, start, len(candles) - 1, every, finetune.train_bars, lookback, horizon,
                      finetune.val_fraction, finetune.stride)


def build_finetuned(service: ForecastService, candles: pd.DataFrame, finetune: FinetuneSettings, first: int,
                    progress: bool = False) -> FinetunedForecasts:
    """`service` with walk-forward fine-tuning for the decisions at bars `first`.. of `candles`."""
    folds = plan_refits(candles, finetune, first, service.settings.lookback, service.settings.horizon)
    return FinetunedForecasts(service, candles, folds, finetune, progress)
