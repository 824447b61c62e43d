"""The search space of a sweep: which settings vary, over what values, checked up front.

Only what a stored forecast does not depend on can vary: the strategy's parameters
(`strategy.params.<name>`, nested ones as `strategy.params.sizing.fraction`) and the shared
risk and cost settings (`risk.stop_loss`, `risk.take_profit`, `costs.commission`,
`costs.slippage`; older `backtest.<same>` names are aliases of these). A space is checked
before any forecast is computed: the names, the ranges, and that the policy accepts the
space's corners (every value of a choice, the low and high ends of ranges).
"""
from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from kronos_trader.config import BacktestSettings, ConfigError, CostSettings, RiskSettings, Settings, SweepSettings, \
    parse_settings
from kronos_trader.decision import load_policy

from .resolution import dedupe_grid, snap_distribution, threshold_params

SHARED_SECTIONS = {"risk": tuple(RiskSettings.model_fields), "costs": tuple(CostSettings.model_fields)}
SHARED_NAMES = tuple(f"{section}.{field}" for section, fields in SHARED_SECTIONS.items() for field in fields)
# older configs set the shared settings in backtest:; run_backtest reads risk:/costs: only
LEGACY_FIELDS = frozenset(name.partition(".")[2] for name in SHARED_NAMES)
LEGACY_NAMES = {f"backtest.{name.partition('.')[2]}": name for name in SHARED_NAMES}
MAX_GRID = 10_000


class SweepSpaceError(ValueError):
    """The sweep's parameters cannot be searched as given (one line, names the parameter)."""


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    grid: list[dict[str, Any]] | None  # every point, for the grid sampler
    notes: tuple[str, ...] = ()        # said once before the trials (e.g. merged P(up) thresholds)

    @property
    def names(self) -> list[str]:
        return list(self.distributions)


def policy_fields(settings: Settings) -> list[str]:
    """The constructor arguments of the configured policy class (its sweepable names)."""
    module, _, name = settings.strategy.name.partition(":")
    load_policy(settings.strategy.name, settings.strategy.params)  # a bad strategy fails here, in one line
    import importlib

    return list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)


def canonical_name(name: str) -> str:
    """A sweep parameter's own name: `backtest.stop_loss` is `risk.stop_loss`, and so on."""
    return LEGACY_NAMES.get(name, name)


def canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` under their own names; one-line error when a name is given twice (old and new)."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for name, value in params.items():
        key = canonical_name(name)
        if key in out:
            raise SweepSpaceError(f"sweep.params: '{given[key]}' and '{name}' are the same setting; give it once")
        out[key], given[key] = value, name
    return out


def _check_name(name: str, fields: list[str], strategy: str) -> None:
    parts = name.split(".")
    if parts[:2] == ["strategy", "params"] and len(parts) >= 3:
        if parts[2] not in fields:
            raise SweepSpaceError(f"sweep.params: unknown parameter '{name}' ({strategy} takes: {', '.join(fields)})")
        return
    if name in SHARED_NAMES:
        return
    if parts[0] in SHARED_SECTIONS or (parts[0] == "backtest" and len(parts) == 2):
        known = parts[0] == "backtest" and parts[1] in BacktestSettings.model_fields
        raise SweepSpaceError(f"sweep.params: {'not sweepable' if known else 'unknown'} parameter '{name}' "
                              f"(risk and costs may be {', '.join(SHARED_NAMES)})")
    if parts[0] in ("forecast", "model", "data"):
        raise SweepSpaceError(f"sweep.params: '{name}' changes the forecasts or the data; a sweep varies "
                              f"strategy.params.* and {', '.join(SHARED_NAMES)} over stored forecasts")
    raise SweepSpaceError(f"sweep.params: unknown parameter '{name}' (use strategy.params.<name> or "
                          f"{'|'.join(SHARED_NAMES)})")


def _distribution(name: str, spec: Any, grid: bool) -> tuple[BaseDistribution, list[Any]]:
    """An Optuna distribution and, for a grid, its values."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SweepSpaceError(f"sweep.params.{name}: empty list of values")
        if any(not isinstance(v, (str, int, float, bool)) and v is not None for v in spec):
            raise SweepSpaceError(f"sweep.params.{name}: values must be numbers, text, true/false or null")
        return CategoricalDistribution(list(spec)), list(spec)
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "step", "log"}:
        raise SweepSpaceError(f"sweep.params.{name}: give a list of values or {{low, high[, step][, log]}}")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log", False))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SweepSpaceError(f"sweep.params.{name}: low and high must be numbers")
    if low > high:
        raise SweepSpaceError(f"sweep.params.{name}: empty range (low {low} > high {high})")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise SweepSpaceError(f"sweep.params.{name}: step must be a positive number")
    if log and (step is not None or low <= 0):
        raise SweepSpaceError(f"sweep.params.{name}: a log range needs low > 0 and no step")
    integer = all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int))
    if grid:
        if step is None:
            raise SweepSpaceError(f"sweep.params.{name}: a grid needs a step (or a list of values)")
        count = int(np.floor((high - low) / step + 1e-9)) + 1
        values = [int(low + i * step) if integer else round(float(low + i * step), 12) for i in range(count)]
        return CategoricalDistribution(values), values
    if integer:
        return IntDistribution(low, high, step=step or 1, log=log), [low, high]
    if step is not None:
        high = low + np.floor((high - low) / step + 1e-9) * step
    return FloatDistribution(float(low), float(high), step=step, log=log), [float(low), float(high)]


def with_params(settings: Settings, params: dict[str, Any]) -> Settings:
    """The settings of one trial: `params` (dotted names) set over the base settings.

    The legacy `backtest:` copies of risk:/costs: are left out of the dump: the validator
    refills them from risk:/costs:, which a trial may change."""
    raw = settings.model_dump(mode="json", exclude={"backtest": set(LEGACY_FIELDS)})
    for dotted, value in canonical_params(params).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SweepSpaceError(f"sweep.params: '{dotted}' goes inside a setting that is not a mapping")
        node[leaf] = value
    return parse_settings(raw, "sweep trial")


def check_point(settings: Settings, params: dict[str, Any]) -> Settings:
    """A trial's settings, with the policy built from them; one-line error when rejected."""
    try:
        trial = with_params(settings, params)
        load_policy(trial.strategy.name, trial.strategy.params)
    except (ConfigError, ValueError, TypeError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise SweepSpaceError(f"sweep.params rejected at {shown}: {str(exc).splitlines()[0]}") from None
    return trial


def build_space(settings: Settings, sweep: SweepSettings) -> SearchSpace:
    if not sweep.params:
        raise SweepSpaceError("sweep.params is empty: name at least one parameter to vary")
    fields = policy_fields(settings)
    distributions, values = {}, {}
    for name, spec in canonical_params(sweep.params).items():
        _check_name(name, fields, settings.strategy.name)
        distributions[name], values[name] = _distribution(name, spec, sweep.sampler == "grid")
    names = list(values)
    grid = None
    if sweep.sampler == "grid":
        size = int(np.prod([len(v) for v in values.values()]))
        if size > MAX_GRID:
            raise SweepSpaceError(f"sweep.params: the grid has {size} points (at most {MAX_GRID}); use sampler: tpe")
        grid = [dict(zip(names, point)) for point in itertools.product(*values.values())]
        for point in grid:
            check_point(settings, point)
        grid, notes = dedupe_grid(grid, threshold_params(settings, names), settings.forecast.sample_count)
    else:
        for i, name in enumerate(names):  # each choice and range end, the others at their first value
            for value in values[name]:
                check_point(settings, {n: (value if n == name else values[n][0]) for n in names})
        check_point(settings, {n: values[n][-1] for n in names})
        notes = []
        for name in threshold_params(settings, names):
            distributions[name], note = snap_distribution(name, distributions[name], settings.forecast.sample_count)
            notes += [note] if note else []
    return SearchSpace(distributions, grid, tuple(notes))
