"""Settings from config.yaml, validated with pydantic.

Every section has defaults that run the demo offline (bundled sample data, bundled model,
SQLite). A wrong field produces one line per problem naming the field and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path("config.yaml")
DEMO_CONFIG_PATH = Path(__file__).parent / "assets" / "config.yaml"  # the checkout's config.yaml, shipped
#: sample paths per forecast at most (memory and time grow linearly with them)
MAX_SAMPLE_COUNT = 256


class ConfigError(ValueError):
    """config.yaml (or an override) is unreadable or invalid."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(Section):
    name: str = Field("kronos-nano", description="bundled name, kronos-mini/small/base, or a pair directory")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    max_context: int | None = Field(None, ge=8, description="defaults to the model's own context length")
    precision: Literal["float32", "bf16"] = Field(
        "float32", description="bf16: faster batched generation on CPUs with AVX512-BF16/AMX and on CUDA (approximate)")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "mps", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


class ForecastSettings(Section):
    """How forecasts are made: the one source of their defaults and limits (the config's
    `forecast:` section, the Backtrader indicator's params and the web workbench's defaults
    all read them here), checked once, when the settings are built."""

    lookback: int = Field(256, ge=8, description="history bars per forecast window")
    horizon: int = Field(24, ge=1, description="bars forecast ahead")
    sample_count: int = Field(8, ge=1, le=MAX_SAMPLE_COUNT, description="sample paths per forecast")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    seed: int = 42
    every: int = Field(1, ge=1, description="forecast at every N-th bar")
    batch_windows: int = Field(64, ge=1, description="windows per model call")
    calibration: Literal["none", "conformal"] = Field(
        "none", description="conformal: widen/narrow the path spread to past coverage (no future data)")
    calibration_window: int = Field(200, ge=10, description="past forecasts the calibration is fitted on")
    p_up: Literal["empirical", "kernel"] = Field(
        "empirical", description="P(up) as the share of paths up (steps of 1/sample_count) or kernel-smoothed")
    p_up_calibration: Literal["none", "isotonic", "logistic"] = Field(
        "none", description="recalibrate P(up) on past forecasts' outcomes (walk-forward, over calibration_window)")
    p_up_min_history: int = Field(50, ge=10, description="known outcomes per step before P(up) is recalibrated")


class SymbolSource(Section):
    symbol: str
    path: Path | None = Field(None, description="candle file; default: stored candles (or the sample)")


def _symbol_source(item: Any) -> Any:
    if isinstance(item, str):
        symbol, _, path = item.strip().partition("=")
        return {"symbol": symbol.strip(), "path": path.strip() or None}
    return item


class DataSettings(Section):
    path: Path | None = Field(None, description="CSV/Parquet/Feather file; default: the bundled sample")
    source: str = Field("binance", description="where stored candles came from (exchange id)")
    symbol: str = "BTC/USDT"
    timeframe: str = "1h"
    start: str | None = Field(None, description="first bar to backtest; default: the whole file or stored series")
    end: str | None = None
    sample_start: str | None = Field(
        "2024-10-01", description="the bundled sample only (no data.path, nothing stored): its first bar to "
                                  "backtest, the demo's last quarter; null for its two years")
    calendar: str = Field("auto", description="future bar stamps: auto (sessions seen in the window), 24/7, "
                                              "or an exchange code such as XNYS, XSHG (exchange-calendars)")

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, value: str) -> str:
        from kronos_trader.data.calendar import check_calendar

        return check_calendar(value)

    symbols: list[SymbolSource] = Field(
        default_factory=list, description="several symbols for one portfolio backtest (stored, or with a path)")

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> Any:
        """A plain string is a stored symbol; 'SYMBOL=path' or a mapping names its file."""
        items = value.split(",") if isinstance(value, str) else (value or [])
        return [_symbol_source(item) for item in items]

    @field_validator("start", "end", "sample_start", mode="before")
    @classmethod
    def _stamp(cls, value: Any) -> Any:
        """YAML reads 2024-01-01 as a date: keep it as text, checked to be a time."""
        if value is None:
            return None
        import pandas as pd

        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ValueError("must be a date or time such as 2024-01-01 or 2024-01-01 12:00") from None
        if not pd.Timestamp.min < stamp.tz_localize(None) < pd.Timestamp.max:
            raise ValueError(f"must lie between {pd.Timestamp.min:%Y-%m-%d} and {pd.Timestamp.max:%Y-%m-%d}")
        return value.isoformat() if hasattr(value, "isoformat") else value

    @model_validator(mode="after")
    def _span(self) -> "DataSettings":
        import pandas as pd

        if self.start is not None and self.end is not None and pd.Timestamp(self.start) > pd.Timestamp(self.end):
            raise ValueError(f"data.start {self.start} is after data.end {self.end}")
        return self


class GateSettings(Section):
    """The skill gate (kronos_trader.gate): trade only while recent forecasts beat a random walk."""

    rule: Literal["crps_skill", "hit_rate"] = Field(
        "crps_skill", description="crps_skill: CRPS skill vs RW+vol > 0; hit_rate: 95% lower bound > 50%")
    window: int = Field(100, ge=5, description="resolved forecasts the rule looks at")
    step: int | None = Field(None, ge=1, description="horizon step scored (default: the last)")
    vol_window: int = Field(48, ge=2, description="one-bar returns in the baseline's rolling volatility")


class StrategySettings(Section):
    name: str = Field("strategies.directional:Directional", description="module:Class of the decision policy")
    params: dict[str, Any] = Field(default_factory=dict)
    gate: GateSettings | None = Field(None, description="skill gate around the policy (off when absent)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if ":" not in value:
            raise ValueError("must look like 'package.module:ClassName'")
        return value


class BacktestSettings(Section):
    cash: float = Field(10_000.0, gt=0)
    commission: float = Field(0.001, ge=0, lt=1, description="fee as a fraction of notional")
    slippage: float = Field(0.0005, ge=0, lt=1, description="price slippage as a fraction")
    stop_loss: float | None = Field(0.05, gt=0, lt=1)
    take_profit: float | None = Field(0.10, gt=0)
    report_dir: Path = Path("reports")


class RiskSettings(Section):
    """Risk exits shared by backtests and live trading (default: the backtest: section's)."""

    stop_loss: float | None = Field(0.05, gt=0, lt=1)
    take_profit: float | None = Field(0.10, gt=0)


class CostSettings(Section):
    """Trading costs shared by backtests and paper trading (default: the backtest: section's)."""

    commission: float = Field(0.001, ge=0, lt=1, description="fee as a fraction of notional")
    slippage: float = Field(0.0005, ge=0, lt=1, description="price slippage as a fraction")


class DatabaseSettings(Section):
    url: str = "sqlite:///kronos_trader.db"


class PairSettings(Section):
    symbol: str
    timeframe: str = "1h"


class PaperSettings(Section):
    exchange: str = "binance"
    api_url: str | None = Field(None, description="override the exchange's REST base URL (testnet, local)")
    pairs: list[PairSettings] = Field(default_factory=lambda: [PairSettings(symbol="BTC/USDT")])
    quote_balance: float = Field(10_000.0, gt=0)
    delay_seconds: float = Field(5.0, ge=0, description="run this long after each candle close")
    misfire_grace_seconds: int = Field(300, ge=1)
    missed_candles: Literal["catch_up", "skip"] = "skip"
    live: bool = Field(False, description="send real orders (also needs the --live flag)")
    api_key_env: str = "KRONOS_API_KEY"
    api_secret_env: str = "KRONOS_API_SECRET"
    notify_urls_env: str | None = Field(None, description="env variable holding apprise URLs for gate alerts (off)")

    @field_validator("pairs")
    @classmethod
    def _some_pairs(cls, value: list[PairSettings]) -> list[PairSettings]:
        if not value:
            raise ValueError("list at least one pair, e.g. [{symbol: BTC/USDT, timeframe: 1h}]")
        return value


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(7070, ge=1, le=65535)
    max_upload_mb: float = Field(20.0, gt=0)
    model_dirs: list[Path] = Field(default_factory=list, description="local model directories users may pick")
    api_key_env: str | None = Field(
        None, description="env variable holding the API key /api/v1 requires (needed to bind beyond loopback)")


class SweepSettings(Section):
    """A parameter sweep (`kronos-trader sweep`): what to vary, how to search, how to score."""

    name: str | None = Field(None, description="study name (default: derived from strategy and space)")
    sampler: Literal["grid", "tpe"] = "tpe"
    trials: int = Field(50, ge=1, description="TPE trials (a grid runs every point)")
    seed: int = 0
    objective: Literal["sharpe", "sortino", "calmar", "total_return", "annual_return"] = "sharpe"
    max_drawdown: float | None = Field(
        None, gt=0, lt=1, description="cap: a trial whose drawdown is deeper scores -inf")
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "dotted setting -> [choices] or {low, high[, step][, log]}, e.g. strategy.params.long_threshold"))
    walk_forward: float | None = Field(
        None, gt=0, lt=1, description="optimise on this first fraction of the bars, score on the rest")
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="host:port of a Ray cluster (default: RAY_ADDRESS, else "
                                                      "start one here)")
    workers: int = Field(1, ge=1, description="trials (and forecast shards) run at once on Ray; locally, start "
                                              "the sweep in more processes (they share the study)")
    screen: int | None = Field(None, ge=1, description="screen the whole grid with the vectorised replay, then "
                               "re-run this many best points through Backtrader (sweep/screen.py)")
    min_trades: int = Field(10, ge=0, description=(
        "a trial with fewer closed trades scores -inf: a handful of trades says nothing about a strategy"))


class FinetuneSettings(Section):
    """Walk-forward fine-tuning (`--refit-every` / `--train-bars`): each fold's model is
    fine-tuned from `model.name` on the `train_bars` bars strictly before its refit point."""

    refit_every: str | None = Field(
        None, description="refit every N bars (e.g. 500) or period (e.g. 30D); off when absent")
    train_bars: int = Field(2000, ge=16, description="bars before each refit point the fold trains on")
    stage: Literal["predictor", "both"] = Field(
        "predictor", description="predictor only, or tokenizer then predictor")
    epochs: float = Field(1.0, gt=0, description="passes over the fold's training windows")
    lr: float = Field(4e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    stride: int = Field(4, ge=1, description="bars between training windows")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="last part of the training span used to pick the "
                                                             "best step (early stopping)")
    seed: int = 0
    cache_dir: Path = Field(Path("runs/finetune"), description="fold models, stored once by content hash")
    keep_models: int | None = Field(
        None, ge=0, description="keep at most this many fold models in cache_dir in total, the running "
                                "walk-forward's included (never deleted): the least recently used others are "
                                "deleted, except any used within the last 24 hours (another run may be about "
                                "to load it); all are kept when absent")


class Settings(Section):
    model: ModelSettings = Field(default_factory=ModelSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    risk: RiskSettings | None = Field(None, description="stop-loss/take-profit for backtest and live")
    costs: CostSettings | None = Field(None, description="commission/slippage for backtest and paper")

    @model_validator(mode="after")
    def _shared_sections(self) -> "Settings":
        """risk: and costs: default to the backtest: section's values (older configs); set
        both ways they must agree."""
        for name, cls in (("risk", RiskSettings), ("costs", CostSettings)):
            section = getattr(self, name)
            legacy = {k: getattr(self.backtest, k) for k in cls.model_fields}
            if section is None:
                setattr(self, name, cls(**legacy))
                continue
            clash = [k for k in cls.model_fields if k in self.backtest.model_fields_set
                     and getattr(section, k) != legacy[k]]
            if clash:
                raise ValueError(f"{', '.join(f'backtest.{k}' for k in clash)} differs from {name}: "
                                 f"(set it in {name}: only)")
            for k in cls.model_fields:  # keep the legacy fields equal (a dumped config re-parses)
                object.__setattr__(self.backtest, k, getattr(section, k))
        return self

    sweep: SweepSettings = Field(default_factory=SweepSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)

    @model_validator(mode="after")
    def _context(self) -> "Settings":
        ctx = self.model.max_context
        if ctx is not None and self.forecast.horizon > ctx:
            raise ValueError(f"forecast.horizon {self.forecast.horizon} exceeds model.max_context {ctx}")
        gate, every = self.strategy.gate, self.forecast.every
        step = (gate.step or self.forecast.horizon) if gate is not None else None
        if step is not None and step > self.forecast.horizon:
            raise ValueError(f"strategy.gate.step {step} exceeds forecast.horizon {self.forecast.horizon}")
        if step is not None and step % every:
            raise ValueError(f"strategy.gate.step {step} is not a multiple of forecast.every {every}: "
                             f"its outcomes would fall between forecast bars")
        return self


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "config"
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if not error["loc"]:  # a check across sections: the input is the whole config
        return msg.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{where}: {msg} (got {error.get('input')!r})"
    if isinstance(error.get("input"), dict):  # a check across a section's fields
        return f"{where}: {msg.removeprefix('Value error, ')}"
    return f"{where}: {msg.removeprefix('Value error, ')} (got {error.get('input')!r})"


def parse_settings(raw: dict[str, Any], source: str = "config",
                   lines_of: dict[tuple[str, ...], int] | None = None) -> Settings:
    """Validate a settings dict; errors name every bad field in one line each (with its
    line in the file when ``lines_of`` maps key paths to lines)."""
    try:
        return Settings.model_validate(raw or {})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            line = _describe(error)
            if error["type"] == "extra_forbidden":
                owner: Any = Settings
                for part in error["loc"][:-1]:
                    owner = owner.model_fields[str(part)].annotation
                    # an optional section (risk: RiskSettings | None): its model
                    owner = next((a for a in get_args(owner) if hasattr(a, "model_fields")), owner)
                if hasattr(owner, "model_fields"):
                    line += f" (allowed: {', '.join(owner.model_fields)})"
            at = (lines_of or {}).get(tuple(str(p) for p in error["loc"]))
            lines.append(f"line {at}: {line}" if at else line)
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def forecast_settings(values: dict[str, Any], where: str = "forecast") -> ForecastSettings:
    """ForecastSettings from plain values (the indicator's params, a request's overrides),
    checked here once: a bad value is a one-line ConfigError naming it (`where.field`)."""
    try:
        return ForecastSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe({**e, "loc": (where, *e["loc"])}) for e in exc.errors())) from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read config.yaml (or the given file) and apply dotted overrides such as
    {"forecast.horizon": 12} from CLI flags. Without either file the shipped demo config
    is read, so an installed package runs the same demo as a checkout."""
    raw: dict[str, Any] = {}
    lines_of: dict[tuple[str, ...], int] = {}
    source = str(path or DEFAULT_CONFIG_PATH)
    file = Path(path) if path else DEFAULT_CONFIG_PATH
    if path is not None and not file.is_file():
        raise ConfigError(f"{source}: file not found")
    if path is None and not file.is_file():
        file, source = DEMO_CONFIG_PATH, "built-in demo config"
    if file.is_file():
        try:
            text = file.read_text()
            _key_lines(yaml.compose(text, Loader=yaml.SafeLoader), (), lines_of, source)
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}: not valid YAML{where}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_settings(raw, source, lines_of)


def _key_lines(node: Any, path: tuple[str, ...], out: dict[tuple[str, ...], int], source: str) -> None:
    """Line of every key path in a YAML document; a key given twice in one mapping is an
    error (YAML loaders silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line + 1
            if name in seen:
                raise ConfigError(f"{source}: line {line}: {'.'.join((*path, name))} is given twice (first at line "
                                  f"{seen[name]})")
            seen[name] = out[(*path, name)] = line
            _key_lines(value, (*path, name), out, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[(*path, str(i))] = value.start_mark.line + 1
            _key_lines(value, (*path, str(i)), out, source)
