"""KronosPredictor: DataFrames in, forecasts out.

Keeps the published `predict`/`predict_batch` signatures and outputs (the mean path as a
DataFrame of open, high, low, close, volume, amount indexed by the future stamps) and adds
`forecast`/`forecast_batch`, which keep every sample path with quantiles and P(up).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .generation import Sampling, generate_cached, generate_reference
from .hub import resolve_spec, window_warnings
from .model import Kronos
from .stamps import as_stamps, future_stamps
from .precision import inference_dtype
from .tokenizer import KronosTokenizer

PRICE_COLS = ["open", "high", "low", "close"]
COLUMNS = PRICE_COLS + ["volume", "amount"]
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
Seed = int | Sequence[int] | None
LONG_HISTORY = ("last", "all")
EPS = 1e-5  # the published normalisation: (x - mean) / (std + EPS)
SWAMP_STD = 1e-2  # below this spread EPS is more than 0.1% of it: the unit would shape the forecast


class LongHistoryWarning(UserWarning):
    """A history longer than the model's context: which rows the forecast used."""


class TrainedWindowWarning(UserWarning):
    """A lookback or horizon far from the window the model's card says it was trained on."""


class PriceScaleWarning(UserWarning):
    """A column normalised as if quoted in a larger unit, because its spread is so small that
    the published normalisation's 1e-5 term would swamp it."""


@dataclass
class Forecast:
    """All sample paths of one series plus the summaries traders read.

    `paths` is (samples, steps, 6) in price units, columns as `COLUMNS`; `mean` is what
    `predict` returns; `quantiles[q]` is a (steps x 6) frame; `p_up[h]` is the share of
    paths whose close at step h is above the last observed close. The summaries are
    computed on first use: batch callers that read only arrays skip the frames.
    """

    paths: np.ndarray
    mean: pd.DataFrame
    last_close: float
    quantile_levels: tuple[float, ...] = QUANTILES
    rescaled: tuple[str, ...] = ()  # columns normalised in a larger unit (see `normalisation`)

    @functools.cached_property
    def quantile_values(self) -> np.ndarray:
        """(levels, steps, 6) array behind `quantiles`."""
        return np.quantile(self.paths, self.quantile_levels, axis=0)

    @functools.cached_property
    def quantiles(self) -> dict[float, pd.DataFrame]:
        return {q: pd.DataFrame(v, index=self.mean.index, columns=COLUMNS)
                for q, v in zip(self.quantile_levels, self.quantile_values)}

    @functools.cached_property
    def prob_up(self) -> np.ndarray:
        """P(close > last close) per step, the array behind `p_up`; a path ending exactly at
        the last close counts half (a tie never reads as "up")."""
        close = self.paths[:, :, 3]
        return (close > self.last_close).mean(axis=0) + 0.5 * (close == self.last_close).mean(axis=0)

    @functools.cached_property
    def p_up(self) -> pd.Series:
        return pd.Series(self.prob_up, index=self.mean.index, name="p_up")

    def summary(self, column: str = "close") -> pd.DataFrame:
        """One row per step: mean, each quantile and P(up) for `column`."""
        out = pd.DataFrame({"mean": self.mean[column]})
        for q in self.quantile_levels:
            out[f"q{round(q * 100):02d}"] = self.quantiles[q][column]
        out["p_up"] = self.p_up
        return out


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """minute, hour, weekday (Monday 0), day of month, month: the model's time inputs."""
    return np.stack([stamps.minute, stamps.hour, stamps.day_of_week, stamps.day, stamps.month], axis=1).astype(np.float32)


def _as_stamps(stamps, what: str, expected_len: int | None) -> pd.DatetimeIndex:
    """Stamps as tz-naive UTC nanoseconds (any datetime64 unit; aware stamps converted),
    checked to be complete and strictly increasing."""
    try:
        index = as_stamps(stamps)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} could not be read as timestamps ({exc})") from None
    if index.hasnans:
        raise ValueError(f"{what} contains missing timestamps (NaT) at position {int(np.argmax(index.isna()))}")
    if expected_len is not None and len(index) != expected_len:
        raise ValueError(f"{what} has {len(index)} stamps but {expected_len} are needed")
    if len(index) > 1:
        steps = np.diff(index.asi8)
        if (steps <= 0).any():
            pos = int(np.argmax(steps <= 0)) + 1
            raise ValueError(f"{what} is not strictly increasing at position {pos} "
                             f"({index[pos - 1]} then {index[pos]})")
    return index


def _prepare_frame(df, what: str) -> np.ndarray:
    """Validate one input frame and return its float32 (rows x 6) values, filling volume
    and amount the published way, in the published memory order."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"{what} is empty")
    missing = [c for c in PRICE_COLS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    used = [c for c in COLUMNS if c in df.columns]
    dtypes = df.dtypes
    for col in used:
        if not pd.api.types.is_numeric_dtype(dtypes[col]) or pd.api.types.is_bool_dtype(dtypes[col]):
            raise ValueError(f"{what} column '{col}' is not numeric (dtype {dtypes[col]})")
    values = df[used].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{what} column '{used[c]}' has a NaN or infinite value at row {r} "
                         f"(index {df.index[r]})")
    # The published steps, in pandas: the amount is filled in the frame's own dtype, and
    # `.values` keeps pandas' memory order, which decides numpy's summation order in the
    # mean and std over rows (a C-ordered copy rounds differently: tokens then differ
    # where a code bit lies within ~1e-6 of zero).
    frame = df.copy()
    if "volume" not in used:  # the published rules: no volume means no amount either
        frame["volume"], frame["amount"] = 0.0, 0.0
    elif "amount" not in used:  # else amount is volume x mean price
        frame["amount"] = frame["volume"] * frame[PRICE_COLS].mean(axis=1)
    out = frame[COLUMNS].values
    huge = np.abs(out) > np.finfo(np.float32).max / 1e3  # the model computes in float32
    if huge.any():
        r, c = np.argwhere(huge)[0]
        raise ValueError(f"{what} column '{COLUMNS[c]}' has a value too large for the model's float32 "
                         f"({out[r, c]:.3g} at row {r}, index {df.index[r]}): rescale the series")
    return out.astype(np.float32)


def _history_stamps(df: pd.DataFrame, x_timestamp, what: str) -> pd.DatetimeIndex:
    if x_timestamp is None:
        for col in ("timestamps", "timestamp"):
            if col in df.columns:
                x_timestamp = df[col]
                break
        else:
            if isinstance(df.index, pd.DatetimeIndex):
                x_timestamp = df.index
            else:
                raise ValueError(f"{what}: pass x_timestamp, or give the frame a DatetimeIndex or a "
                                 f"'timestamps' column")
    return _as_stamps(x_timestamp, f"x_timestamp of {what}", len(df))


def normalisation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean, std, the divisor of the normalisation, and which columns it rescales.

    The published code divides by `std + 1e-5`. Where the spread is large (std >= 0.01) that
    is kept bit for bit, so parity holds. Where the 1e-5 would swamp it (ADA/BTC at 5e-5 has
    a std of ~2e-7: the divisor was 50x the spread, so forecasts depended on the unit the
    price is quoted in), the column is normalised as if quoted in the power of ten that brings
    its std to [1, 10): the divisor becomes `std + 1e-5 / k`.
    """
    mean, std = np.mean(values, axis=0), np.std(values, axis=0)
    small = (std > 0) & (std < SWAMP_STD)
    k = np.where(small, 10.0 ** np.ceil(-np.log10(np.where(small, std, 1.0))), 1.0)
    return mean, std, std + (EPS / k).astype(values.dtype), small


def _uniforms(seed, samples: int, steps: int) -> np.ndarray:
    """The random numbers one series' sampling consumes, from its own seed."""
    return np.random.default_rng(seed).random((samples, steps, 2), dtype=np.float64).astype(np.float32)


class KronosPredictor:
    """Forecasts with a Kronos model and its tokenizer, exactly as the published predictor.

    `cached` is the one switch between the two paths: True (default) runs the fast path
    (`kronos.fast`: packed products, KV caches), False the published uncached loop on the
    plain model. `precision="bf16"` runs the fast path in bfloat16 (`kronos.precision`).
    """

    def __init__(self, model: Kronos, tokenizer: KronosTokenizer, device: str | torch.device | None = None,
                 max_context: int = 512, clip: float = 5, cached: bool = True, precision: str = "float32",
                 long_history: str = "last", trained_window: tuple[int, int] | None = None, sliding: str = "exact",
                 warn_window: bool = True):
        """`long_history`: what a history longer than `max_context` rows means. 'last' (default)
        forecasts from its last `max_context` rows and warns; 'all' is the published arithmetic
        (every row normalised and tokenized, the model sees the last `max_context` tokens).
        `trained_window` (lookback, horizon) makes calls far from it warn, unless `warn_window`
        is False (a caller that warns once per configuration itself). `sliding=
        "approximate"` (fast path only) keeps the caches when history + forecast exceed the
        context instead of rerunning the slid window (`generate_tokens`): faster, approximate."""
        if long_history not in LONG_HISTORY:
            raise ValueError(f"long_history must be 'last' or 'all', got {long_history!r}")
        self.long_history, self.trained_window, self.warn_window = long_history, trained_window, warn_window
        self.device = _device(device)
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer.eval().to(self.device)
        self.max_context, self.clip = int(max_context), clip
        self.cached = cached
        self.dtype = inference_dtype(precision, self.device)
        if self.dtype != torch.float32 and not cached:
            raise ValueError("precision 'bf16' runs on the fast path only (cached=True)")
        if sliding not in ("exact", "approximate") or (sliding == "approximate" and not cached):
            raise ValueError(f"sliding must be 'exact' or, on the fast path (cached=True), 'approximate'; "
                             f"got {sliding!r}")
        self.sliding = sliding
        self.price_cols, self.vol_col, self.amt_vol = PRICE_COLS, "volume", "amount"

    @classmethod
    def from_pretrained(cls, name: str, device: str | torch.device | None = None, precision: str = "float32",
                        sliding: str = "exact", long_history: str = "last", warn_window: bool = True,
                        **kwargs) -> "KronosPredictor":
        """Load a named pair ('kronos-small', a bundled name, or a pair directory)."""
        spec = resolve_spec(name)
        tokenizer = KronosTokenizer.from_pretrained(spec.tokenizer, **kwargs)
        model = Kronos.from_pretrained(spec.model, **kwargs)
        return cls(model, tokenizer, device=device, max_context=spec.max_context, precision=precision,
                   trained_window=spec.trained_window, sliding=sliding, long_history=long_history,
                   warn_window=warn_window)

    # --- public API -----------------------------------------------------------------------
    def predict(self, df: pd.DataFrame, x_timestamp=None, y_timestamp=None, pred_len: int | None = None,
                T: float = 1.0, top_k: int = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = True,
                seed: Seed = None) -> pd.DataFrame:
        """Mean forecast path (the published output)."""
        return self.forecast(df, x_timestamp, y_timestamp, pred_len, T, top_k, top_p, sample_count, verbose,
                             seed).mean

    def predict_batch(self, df_list, x_timestamp_list=None, y_timestamp_list=None, pred_len: int | None = None,
                      T: float = 1.0, top_k: int = 0, top_p: float = 0.9, sample_count: int = 1,
                      verbose: bool = True, seed: Seed | Sequence[Seed] = None) -> list[pd.DataFrame]:
        """Mean forecast path of each series; series may differ in length."""
        return [f.mean for f in self.forecast_batch(df_list, x_timestamp_list, y_timestamp_list, pred_len, T, top_k,
                                                    top_p, sample_count, verbose, seed)]

    def forecast(self, df: pd.DataFrame, x_timestamp=None, y_timestamp=None, pred_len: int | None = None,
                 T: float = 1.0, top_k: int = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = True,
                 seed: Seed = None) -> Forecast:
        """All sample paths, quantiles and P(up) for one series."""
        return self.forecast_batch([df], None if x_timestamp is None else [x_timestamp],
                                   None if y_timestamp is None else [y_timestamp], pred_len, T, top_k, top_p,
                                   sample_count, verbose, [seed])[0]

    def forecast_batch(self, df_list, x_timestamp_list=None, y_timestamp_list=None, pred_len: int | None = None,
                       T: float = 1.0, top_k: int = 0, top_p: float = 0.9, sample_count: int = 1,
                       verbose: bool = True, seed: Seed | Sequence[Seed] = None) -> list[Forecast]:
        """Forecasts for many series in as few model calls as possible.

        `seed` is one int (series i then uses the seed (seed, i)) or one seed per series;
        a series' paths depend only on its own seed and data.
        """
        sampling = self._check_settings(pred_len, T, top_k, top_p, sample_count)
        if not isinstance(df_list, (list, tuple)) or not df_list:
            raise ValueError("df_list must be a non-empty list of DataFrames")
        n = len(df_list)
        x_ts = self._per_series(x_timestamp_list, n, "x_timestamp_list")
        y_ts = self._per_series(y_timestamp_list, n, "y_timestamp_list")
        seeds = self._per_series_seeds(seed, n)
        series = []
        for i, df in enumerate(df_list):
            what = "df" if n == 1 else f"df_list[{i}]"
            values = _prepare_frame(df, what)
            history = _history_stamps(df, x_ts[i], what)
            future = future_stamps(history, pred_len) if y_ts[i] is None else \
                _as_stamps(y_ts[i], f"y_timestamp of {what}", pred_len)
            if len(values) > self.max_context and self.long_history == "last":
                warnings.warn(f"{what} has {len(values)} rows, more than the model's context of {self.max_context}: "
                              f"forecasting from the last {self.max_context} (normalised over those); "
                              f"long_history='all' normalises over every row, as the published code does",
                              LongHistoryWarning, stacklevel=3)
                values = _prepare_frame(df.iloc[-self.max_context:], what)  # as if the user had passed those
                history = history[-self.max_context:]
            series.append((values, history, future))
        self._warn_window(min(len(v) for v, _, _ in series), pred_len)
        return self._run(series, pred_len, sampling, sample_count, seeds, verbose)

    # --- internals ------------------------------------------------------------------------
    def _warn_window(self, lookback: int, horizon: int) -> None:
        """Warn when the call is far from the window the model's card says it was trained on."""
        if self.warn_window:
            for message in window_warnings(self.trained_window, lookback, horizon):
                warnings.warn(message, TrainedWindowWarning, stacklevel=4)

    @staticmethod
    def _per_series(values, n: int, what: str) -> list:
        if values is None:
            return [None] * n
        if isinstance(values, (pd.Series, pd.DatetimeIndex)) or len(values) != n:
            raise ValueError(f"{what} must be a list with one entry per series ({n})")
        return list(values)

    @staticmethod
    def _per_series_seeds(seed, n: int) -> list:
        if seed is None or isinstance(seed, (int, np.integer)):
            return [None if seed is None else [int(seed), i] for i in range(n)]
        if len(seed) != n:
            raise ValueError(f"seed must be an int or a list of {n} seeds, got {len(seed)}")
        return list(seed)

    def _check_settings(self, pred_len, T, top_k, top_p, sample_count) -> Sampling:
        if pred_len is None or isinstance(pred_len, bool) or not isinstance(pred_len, (int, np.integer)) \
                or pred_len < 1:
            raise ValueError(f"pred_len must be an integer >= 1, got {pred_len!r}")
        if pred_len > self.max_context:
            raise ValueError(f"pred_len {pred_len} exceeds the model's context of {self.max_context} tokens")
        if not isinstance(sample_count, (int, np.integer)) or sample_count < 1:
            raise ValueError(f"sample_count must be an integer >= 1, got {sample_count!r}")
        if not np.isfinite(T) or T <= 0:
            raise ValueError(f"T (temperature) must be > 0, got {T!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k!r}")
        return Sampling(float(T), int(top_k), float(top_p))

    def _run(self, series, pred_len: int, sampling: Sampling, samples: int, seeds: list, verbose: bool):
        """Normalise each series, generate in groups of equal history length, map back."""
        normed, stats, rescaled = [], [], []
        for values, _, _ in series:
            mean, std, divisor, small = normalisation(values)
            z = np.clip((values - mean) / divisor, -self.clip, self.clip)
            bad = ~(np.isfinite(mean) & np.isfinite(divisor))
            if bad.any() or not np.isfinite(z).all():
                col = COLUMNS[int(np.flatnonzero(bad)[0])] if bad.any() else "a column"
                raise ValueError(f"{col} overflows float32 when normalised (largest |value| "
                                 f"{float(np.abs(values).max()):.3g}): rescale the series")
            normed.append(z)
            stats.append((mean, std, divisor))
            rescaled.append(tuple(c for c, r in zip(COLUMNS, small) if r))
        swamped = sorted({c for cols in rescaled for c in cols}, key=COLUMNS.index)
        if swamped:
            warnings.warn(f"{', '.join(swamped)} vary by less than {SWAMP_STD} (std): the published normalisation's "
                          f"{EPS} term would swamp the spread, so these columns are normalised as if quoted in a "
                          f"larger unit; the forecast does not depend on the price unit", PriceScaleWarning,
                          stacklevel=4)
        groups: dict[int, list[int]] = {}
        for i, (values, _, _) in enumerate(series):
            groups.setdefault(len(values), []).append(i)
        paths: list[np.ndarray | None] = [None] * len(series)
        generate = generate_cached if self.cached else generate_reference
        extra = {"dtype": self.dtype, "sliding": self.sliding} if self.cached else {}
        batches = list(groups.values())
        progress = _progress(batches, verbose)
        for members in progress:
            x = torch.from_numpy(np.stack([normed[i] for i in members])).to(self.device)
            xs = torch.from_numpy(np.stack([time_features(series[i][1]) for i in members])).to(self.device)
            ys = torch.from_numpy(np.stack([time_features(series[i][2]) for i in members])).to(self.device)
            u = torch.from_numpy(np.stack([_uniforms(seeds[i], samples, pred_len) for i in members])).to(self.device)
            z = generate(self.tokenizer, self.model, x, xs, ys, self.max_context, pred_len, sampling, u, **extra)
            z = z.float().cpu().numpy()
            for j, i in enumerate(members):
                paths[i] = z[j]
        out = []
        for (values, _, future), (mean, std, divisor), z, cols in zip(series, stats, paths, rescaled):
            mean_path = np.mean(z, axis=0) * divisor + mean  # the published averaging
            frame = pd.DataFrame(mean_path, columns=COLUMNS, index=future)
            price_paths = z * divisor + mean
            if std[3] == 0:  # a flat close carries no direction: the neutral forecast, every path at it
                price_paths[:, :, 3] = mean_path[:, 3] = mean[3]
                frame["close"] = mean[3]
            out.append(Forecast(paths=price_paths, mean=frame, last_close=float(values[-1, 3]), rescaled=cols))
        return out


def _progress(items: list, verbose: bool):
    if not verbose or len(items) < 2:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc="forecasting", unit="batch")
