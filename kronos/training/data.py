"""Training windows over one or many candle series.

Each series is split chronologically: the first `1 - val_fraction` of its rows feed training
windows, and validation windows only *predict* rows after that split (their look-back may
reach back into the training rows, which are the past). A window is `lookback + horizon`
consecutive rows; it is normalised with the mean and standard deviation of its look-back
rows only and clipped to ±`clip`, exactly as `KronosPredictor` normalises a history, so the
horizon rows never influence the inputs (no look-ahead).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..predictor import _history_stamps, _prepare_frame, time_features
from .errors import TrainingDataError

EPS = 1e-5


@dataclass(frozen=True)
class Series:
    """One candle series: float32 OHLCVA rows (n, 6) and their time features (n, 5)."""

    values: np.ndarray
    stamps: np.ndarray
    name: str = "series"

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", np.ascontiguousarray(self.values, dtype=np.float32))
        object.__setattr__(self, "stamps", np.ascontiguousarray(self.stamps, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.values)


def prepare_series(data, names: Sequence[str] | None = None) -> list[Series]:
    """Turn a DataFrame, a `Series`, a `(values, timestamps)` pair, or a list of these into
    `Series`. Frames need open/high/low/close (volume/amount are filled the published way)
    and a DatetimeIndex or a 'timestamps'/'timestamp' column."""
    if isinstance(data, (pd.DataFrame, Series)) or (isinstance(data, tuple) and len(data) == 2
                                                    and isinstance(data[0], np.ndarray)):
        data = [data]
    try:
        items = list(data)
    except TypeError:
        raise TrainingDataError(f"training data must be a DataFrame or a list of them, got {type(data).__name__}") \
            from None
    if not items:
        raise TrainingDataError("no training data: the list of series is empty")
    out = []
    for i, item in enumerate(items):
        name = names[i] if names is not None else (f"series {i}" if len(items) > 1 else "series")
        out.append(_one_series(item, name))
    return out


def _one_series(item, name: str) -> Series:
    if isinstance(item, Series):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        values, stamps = item
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != 6:
            raise TrainingDataError(f"{name}: values must be (rows, 6) open/high/low/close/volume/amount, "
                                    f"got shape {values.shape}")
        if len(values) == 0:
            raise TrainingDataError(f"{name} is empty")
        if not np.isfinite(values).all():
            raise TrainingDataError(f"{name} has NaN or infinite values")
        try:
            index = pd.DatetimeIndex(stamps)
        except (TypeError, ValueError) as exc:
            raise TrainingDataError(f"{name}: timestamps could not be read ({exc})") from None
        if len(index) != len(values):
            raise TrainingDataError(f"{name}: {len(index)} timestamps for {len(values)} rows")
        return Series(values, time_features(index), name)
    if not isinstance(item, pd.DataFrame):
        raise TrainingDataError(f"{name}: expected a DataFrame or (values, timestamps), got {type(item).__name__}")
    if item.empty:
        raise TrainingDataError(f"{name} is empty")
    try:
        values = _prepare_frame(item, name)
        index = _history_stamps(item, None, name)
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    return Series(values, time_features(index), name)


def normalise_window(window: np.ndarray, lookback: int, clip: float = 5.0) -> np.ndarray:
    """Normalise a (rows, 6) window with the mean/std of its first `lookback` rows, clipped."""
    past = window[:lookback]
    mean, std = past.mean(axis=0), past.std(axis=0)
    return np.clip((window - mean) / (std + EPS), -clip, clip).astype(np.float32)


class WindowDataset(Dataset):
    """(x, stamp) windows of `lookback + horizon` rows from one split of many series.

    `x` is (rows, 6) normalised with look-back statistics, `stamp` (rows, 5) time features.
    `split` is 'train' (windows wholly inside the first `1 - val_fraction` of each series)
    or 'val' (windows whose horizon lies wholly after that point).
    """

    def __init__(self, series: Sequence[Series], lookback: int, horizon: int, split: str = "train",
                 val_fraction: float = 0.2, stride: int = 1, clip: float = 5.0, max_windows: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.series, self.lookback, self.horizon, self.clip = list(series), int(lookback), int(horizon), clip
        self.length = self.lookback + self.horizon
        starts = [window_starts(len(s), self.lookback, self.horizon, split, val_fraction, stride) for s in series]
        index = np.concatenate([np.stack([np.full(len(st), k), st], axis=1) for k, st in enumerate(starts)]) \
            if starts else np.zeros((0, 2), dtype=np.int64)
        index = index.astype(np.int64).reshape(-1, 2)
        if max_windows is not None and len(index) > max_windows:  # evenly spaced, deterministic
            index = index[np.linspace(0, len(index) - 1, max_windows).round().astype(np.int64)]
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k, start = self.index[i]
        s = self.series[k]
        rows = slice(int(start), int(start) + self.length)
        return normalise_window(s.values[rows], self.lookback, self.clip), s.stamps[rows]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, stamp = self.window(i)
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(stamp))

    def batch(self, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack several windows into (B, rows, 6) and (B, rows, 5) tensors."""
        xs, stamps = zip(*(self.window(int(i)) for i in indices))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(stamps))


def split_point(n: int, val_fraction: float) -> int:
    """First row of the validation part of a series of `n` rows."""
    return n - int(round(n * val_fraction))


def window_starts(n: int, lookback: int, horizon: int, split: str, val_fraction: float, stride: int = 1) -> np.ndarray:
    """Start rows of the windows of one series in one split (see `WindowDataset`)."""
    length, cut = lookback + horizon, split_point(n, val_fraction)
    if split == "train":
        first, last = 0, cut - length
    else:
        if val_fraction <= 0:
            return np.zeros(0, dtype=np.int64)
        first, last = max(0, cut - lookback), n - length
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, max(1, int(stride)), dtype=np.int64)


def build_datasets(data, lookback: int, horizon: int, max_context: int, val_fraction: float = 0.2,
                   stride: int = 1, val_stride: int | None = None, max_val_windows: int | None = None,
                   clip: float = 5.0, names: Sequence[str] | None = None) -> tuple[WindowDataset, WindowDataset | None]:
    """Train and validation window datasets over one or many series.

    Raises `TrainingDataError` for empty data, data too short for a single training window,
    or a validation split (val_fraction > 0) that yields no window. Series too short for a
    window are skipped with a warning when others are long enough.
    """
    if lookback < 1 or horizon < 1:
        raise TrainingDataError(f"lookback and horizon must be >= 1, got {lookback} and {horizon}")
    if lookback + horizon > max_context:
        raise TrainingDataError(f"a window of lookback {lookback} + horizon {horizon} = {lookback + horizon} rows "
                                f"does not fit max_context {max_context}")
    if not 0 <= val_fraction < 1:
        raise TrainingDataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    series = prepare_series(data, names)
    length = lookback + horizon
    train = WindowDataset(series, lookback, horizon, "train", val_fraction, stride, clip)
    if len(train) == 0:
        longest = max(len(s) for s in series)
        need = int(np.ceil(length / (1 - val_fraction)))
        raise TrainingDataError(f"data too short: the longest series has {longest} rows but one training window "
                                f"needs {length} (lookback {lookback} + horizon {horizon}), i.e. at least {need} "
                                f"rows with val_fraction {val_fraction}")
    short = [s.name for s in series if len(window_starts(len(s), lookback, horizon, "train", val_fraction)) == 0]
    if short:
        warnings.warn(f"skipping {len(short)} series too short for a training window: {', '.join(short[:5])}",
                      stacklevel=2)
    if val_fraction == 0:
        return train, None
    val = WindowDataset(series, lookback, horizon, "val", val_fraction, val_stride or horizon, clip,
                        max_windows=max_val_windows)
    if len(val) == 0:
        longest = max(len(s) for s in series)
        raise TrainingDataError(f"the validation split has no windows: the last {val_fraction:.0%} of the longest "
                                f"series is {longest - split_point(longest, val_fraction)} rows but a window "
                                f"predicts {horizon}; use more data, a larger val_fraction or a shorter horizon")
    return train, val
