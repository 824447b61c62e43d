"""`kronos-trader train`: train or fine-tune Kronos tokenizers and predictors on candles.

    kronos-trader train tokenizer --data a.csv --data b.parquet --out runs/tok
    kronos-trader train predictor --data a.csv --tokenizer runs/tok --out runs/pred --export my-model
    kronos-trader train all --synthetic 12 --out my-model          # both stages + pair directory
    torchrun --nproc_per_node 2 -m kronos_trader.cli train predictor ...   # data-parallel

Data come from files (`--data`, repeatable), candles stored in the database (`--symbol`,
repeatable, with `--timeframe`/`--source`/`--db`), synthetic markets (`--synthetic N`), or by
default the bundled synthetic sample's first 80% (its last 20% is what `evaluate` holds out).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, List, Optional

import pandas as pd
import typer
from rich.console import Console

from kronos_trader.commands.common import one_line_warnings

train_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Train or fine-tune Kronos tokenizers and predictors (torchrun-ready).")
_err = Console(stderr=True)

SYNTHETIC_INTERVALS = ("1h", "4h", "15m", "1h", "1d", "30m")
SYNTHETIC_STARTS = ("2019-03-01", "2020-07-15", "2021-01-01", "2022-05-20", "2017-09-01", "2023-02-10")
SYNTHETIC_PRICES = (30000.0, 1800.0, 95.0, 0.45, 420.0, 7.5)
DEFAULT_SAMPLE_FRACTION = 0.8  # matches evaluate's default hold-out of the last 20%


def register(app: typer.Typer) -> None:
    """Add the `train` command group to the main CLI."""
    app.add_typer(train_app, name="train")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _say(message: str) -> None:
    if _rank() == 0:
        _err.print(message, highlight=False, soft_wrap=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    from kronos import CheckpointError
    from kronos_trader.data import CandleDataError

    errors: list[type[BaseException]] = [CheckpointError, CandleDataError, ValueError, FileNotFoundError]
    try:
        from kronos_trader.store import StoreError
        errors.append(StoreError)
    except ImportError:  # pragma: no cover - store is optional for training
        pass
    return tuple(errors)


def _run(action: Callable[[], None]) -> None:
    """Run a command, turning expected failures into one line and exit status 1."""
    try:
        with one_line_warnings():
            action()
    except _user_errors() as exc:
        text = str(exc).strip()
        _err.print(f"[red]error:[/red] {text.splitlines()[0] if text else type(exc).__name__}", highlight=False,
                   soft_wrap=True)
        raise typer.Exit(1) from None


# --- data ------------------------------------------------------------------------------------
def synthetic_frames(count: int, bars: int, seed: int = 100) -> tuple[list[pd.DataFrame], list[str]]:
    """`count` SYNTHETIC markets (generate_market) over several intervals, start dates and
    price levels; seeds `seed`, `seed+1`, ... (the bundled sample uses seed 6)."""
    from kronos_trader.data import generate_market

    frames, names = [], []
    for k in range(count):
        interval = SYNTHETIC_INTERVALS[k % len(SYNTHETIC_INTERVALS)]
        frames.append(generate_market(bars, interval=interval, start=SYNTHETIC_STARTS[k % len(SYNTHETIC_STARTS)],
                                      seed=seed + k, start_price=SYNTHETIC_PRICES[k % len(SYNTHETIC_PRICES)]))
        names.append(f"synthetic seed {seed + k} {interval}")
    return frames, names


def collect_data(data: list[Path] | None, until: float | None, synthetic: int, synthetic_bars: int,
                 synthetic_seed: int, symbols: list[str] | None, timeframe: str, source: str,
                 db: str | None, sample: bool | None = None) -> tuple[list[pd.DataFrame], list[str]]:
    """Frames and names from files, the database, synthetic markets and/or the bundled sample."""
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles

    if until is not None and not 0 < until <= 1:
        raise ValueError(f"--until must be in (0, 1], got {until}")
    frames, names = [], []
    for path in data or []:
        frame = load_candles(path)
        frames.append(frame.iloc[:max(1, int(len(frame) * (until or 1.0)))])
        names.append(str(path))
    if symbols:
        from kronos_trader.store import open_store

        store = open_store(db or "sqlite:///kronos_trader.db")
        for symbol in symbols:
            frame = store.load_candles(source, symbol, timeframe)
            if frame.empty:
                raise ValueError(f"no stored candles for {source} {symbol} {timeframe} in {db or 'the database'}")
            frames.append(frame.iloc[:max(1, int(len(frame) * (until or 1.0)))])
            names.append(f"{source} {symbol} {timeframe}")
    if synthetic:
        more, more_names = synthetic_frames(synthetic, synthetic_bars, synthetic_seed)
        frames += more
        names += more_names
    if sample or (sample is None and not frames):
        frame = load_candles(SAMPLE_DATA_PATH)
        fraction = until if until is not None else DEFAULT_SAMPLE_FRACTION
        frames.append(frame.iloc[:int(len(frame) * fraction)])
        names.append(f"bundled sample (first {fraction:.0%})")
    return frames, names


# --- shared options -----------------------------------------------------------------------------
DataOpt = typer.Option(None, "--data", "-d", help="CSV/Parquet/Feather candle file (repeatable)")
UntilOpt = typer.Option(None, help="use only the first FRACTION of each series (default: 1; 0.8 for the sample)")
SyntheticOpt = typer.Option(0, help="add N synthetic markets (generate_market) to the data")
SyntheticBarsOpt = typer.Option(8760, help="bars per synthetic market")
SyntheticSeedOpt = typer.Option(100, help="seed of the first synthetic market")
SampleOpt = typer.Option(None, "--sample/--no-sample",
                         help="include the bundled sample's first 80% (default: only when no other data)")
SymbolOpt = typer.Option(None, "--symbol", help="stored candles of this symbol (repeatable)")
TimeframeOpt = typer.Option("1h", help="timeframe of stored candles")
SourceOpt = typer.Option("binance", help="exchange the stored candles came from")
DbOpt = typer.Option(None, "--db", help="SQLAlchemy database URL of the store")
LookbackOpt = typer.Option(256, help="history rows per training window")
HorizonOpt = typer.Option(32, help="rows after the history per window")
ContextOpt = typer.Option(512, help="model context; lookback + horizon must fit")
ValOpt = typer.Option(0.1, help="last fraction of each series used for validation (0: none)")
BatchOpt = typer.Option(32, help="windows per micro-batch and process")
AccumOpt = typer.Option(1, help="micro-batches per optimizer step")
WarmupOpt = typer.Option(50, help="linear warm-up steps")
DecayOpt = typer.Option(0.05, help="AdamW weight decay")
ClipOpt = typer.Option(1.0, help="gradient-norm clip (0: off)")
EvalOpt = typer.Option(200, help="validate and checkpoint every N steps")
LogOpt = typer.Option(10, help="log metrics every N steps")
MaxValOpt = typer.Option(512, help="at most this many validation windows")
StrideOpt = typer.Option(1, help="rows between training window starts")
SeedOpt = typer.Option(0, help="seed for initialisation, batch order and dropout")
DeviceOpt = typer.Option("auto", help="auto, cpu, cuda, cuda:N")
AmpOpt = typer.Option("auto", help="auto (bf16/fp16 on GPU, off on CPU), bf16, fp16, off")
ResumeOpt = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint")
OverwriteOpt = typer.Option(False, "--overwrite", help="start over even if --out holds a checkpoint")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="show a progress bar")


def _config(out: Path, **kwargs):
    from kronos.training import TrainConfig

    return TrainConfig(out_dir=out, **kwargs)


def _report(result, what: str) -> None:
    best = f"best val loss {result.best_val_loss:.4f} at step {result.best_step}" \
        if result.best_val_loss is not None else "no validation"
    _say(f"{what}: {result.step} steps in {result.elapsed_s:.0f}s, {best}; checkpoints in {result.out_dir}")


def _collect(options: dict):
    """The training series named by a command's data options."""
    o = options
    return collect_data(o["data"], o["until"], o["synthetic"], o["synthetic_bars"], o["synthetic_seed"], o["symbol"],
                        o["timeframe"], o["source"], o["db"], o["sample"])


def _common(options: dict) -> dict:
    """TrainConfig fields every stage takes from the command's options."""
    o = options
    return dict(lookback=o["lookback"], horizon=o["horizon"], max_context=o["max_context"],
                val_fraction=o["val_fraction"], batch_size=o["batch_size"], grad_accum=o["grad_accum"],
                warmup_steps=o["warmup"], weight_decay=o["weight_decay"], clip_grad=o["clip_grad"],
                eval_every=o["eval_every"], log_every=o["log_every"], max_val_windows=o["max_val_windows"],
                stride=o["stride"], seed=o["seed"], device=o["device"], amp=o["amp"], resume=o["resume"],
                overwrite=o["overwrite"], progress=o["progress"])


@train_app.command("tokenizer")
def tokenizer_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="run directory (last/, best/, metrics.csv)"),
    init: str = typer.Option("nano", help="size (nano, mini, small, base) or a checkpoint to fine-tune"),
    data: Optional[List[Path]] = DataOpt, until: Optional[float] = UntilOpt, synthetic: int = SyntheticOpt,
    synthetic_bars: int = SyntheticBarsOpt, synthetic_seed: int = SyntheticSeedOpt,
    sample: Optional[bool] = SampleOpt, symbol: Optional[List[str]] = SymbolOpt,
    timeframe: str = TimeframeOpt, source: str = SourceOpt, db: Optional[str] = DbOpt,
    lookback: int = LookbackOpt, horizon: int = HorizonOpt, max_context: int = ContextOpt,
    val_fraction: float = ValOpt, steps: int = typer.Option(1000, help="optimizer steps"),
    batch_size: int = BatchOpt, grad_accum: int = AccumOpt, lr: float = typer.Option(1e-3, help="peak learning rate"),
    warmup: int = WarmupOpt, weight_decay: float = DecayOpt, clip_grad: float = ClipOpt, eval_every: int = EvalOpt,
    log_every: int = LogOpt, max_val_windows: int = MaxValOpt, stride: int = StrideOpt, seed: int = SeedOpt,
    device: str = DeviceOpt, amp: str = AmpOpt, resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Stage 1: train the tokenizer to reconstruct normalised candles through its codes."""
    options = dict(locals())
    def action() -> None:
        from kronos.training import train_tokenizer

        frames, names = _collect(options)
        cfg = _config(out, max_steps=steps, lr=lr, **_common(options))
        _report(train_tokenizer(frames, cfg, init=init, names=names), "tokenizer")
    _run(action)


@train_app.command("predictor")
def predictor_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="run directory (last/, best/, metrics.csv)"),
    tokenizer: str = typer.Option(..., help="frozen tokenizer: run dir, pair dir, checkpoint dir or model name"),
    init: str = typer.Option("nano", help="size (nano, mini, small, base) or a checkpoint to fine-tune"),
    export: Optional[Path] = typer.Option(None, help="also write a pair directory (tokenizer/, model/, kronos.json)"),
    data: Optional[List[Path]] = DataOpt, until: Optional[float] = UntilOpt, synthetic: int = SyntheticOpt,
    synthetic_bars: int = SyntheticBarsOpt, synthetic_seed: int = SyntheticSeedOpt,
    sample: Optional[bool] = SampleOpt, symbol: Optional[List[str]] = SymbolOpt,
    timeframe: str = TimeframeOpt, source: str = SourceOpt, db: Optional[str] = DbOpt,
    lookback: int = LookbackOpt, horizon: int = HorizonOpt, max_context: int = ContextOpt,
    val_fraction: float = ValOpt, steps: int = typer.Option(2000, help="optimizer steps"),
    batch_size: int = BatchOpt, grad_accum: int = AccumOpt, lr: float = typer.Option(4e-4, help="peak learning rate"),
    warmup: int = WarmupOpt, weight_decay: float = DecayOpt, clip_grad: float = ClipOpt, eval_every: int = EvalOpt,
    log_every: int = LogOpt, max_val_windows: int = MaxValOpt, stride: int = StrideOpt, seed: int = SeedOpt,
    device: str = DeviceOpt, amp: str = AmpOpt, resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Stage 2: train the predictor on the frozen tokenizer's tokens (next-token cross-entropy)."""
    options = dict(locals())
    def action() -> None:
        from kronos.training import export_pair, train_predictor

        frames, names = _collect(options)
        cfg = _config(out, max_steps=steps, lr=lr, **_common(options))
        result = train_predictor(frames, tokenizer, cfg, init=init, names=names)
        _report(result, "predictor")
        if export is not None and _rank() == 0:
            export_pair(tokenizer, result.best_dir, export, max_context)
            _say(f"pair written to {export} (load with KronosPredictor.from_pretrained('{export}'))")
    _run(action)


@train_app.command("all")
def all_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="pair directory to write (tokenizer/, model/, kronos.json)"),
    run_dir: Optional[Path] = typer.Option(None, help="where the two runs go (default: OUT/runs)"),
    init: str = typer.Option("nano", help="size (nano, mini, small, base) or a pair to fine-tune"),
    data: Optional[List[Path]] = DataOpt, until: Optional[float] = UntilOpt, synthetic: int = SyntheticOpt,
    synthetic_bars: int = SyntheticBarsOpt, synthetic_seed: int = SyntheticSeedOpt,
    sample: Optional[bool] = SampleOpt, symbol: Optional[List[str]] = SymbolOpt,
    timeframe: str = TimeframeOpt, source: str = SourceOpt, db: Optional[str] = DbOpt,
    lookback: int = LookbackOpt, horizon: int = HorizonOpt, max_context: int = ContextOpt,
    val_fraction: float = ValOpt,
    tokenizer_steps: int = typer.Option(1000, help="tokenizer optimizer steps"),
    predictor_steps: int = typer.Option(2000, help="predictor optimizer steps"),
    tokenizer_lr: float = typer.Option(1e-3), predictor_lr: float = typer.Option(4e-4),
    batch_size: int = BatchOpt, grad_accum: int = AccumOpt, warmup: int = WarmupOpt,
    weight_decay: float = DecayOpt, clip_grad: float = ClipOpt, eval_every: int = EvalOpt, log_every: int = LogOpt,
    max_val_windows: int = MaxValOpt, stride: int = StrideOpt, seed: int = SeedOpt, device: str = DeviceOpt,
    amp: str = AmpOpt, resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt, progress: bool = ProgressOpt,
) -> None:
    """Both stages, then a pair directory that KronosPredictor.from_pretrained loads."""
    options = dict(locals())
    def action() -> None:
        from kronos.training.distributed import cleanup, init_distributed

        frames, names = _collect(options)
        info = init_distributed(device)  # one process group for both stages under torchrun
        try:
            _all_stages(frames, names, info)
        finally:
            cleanup(info)

    def _all_stages(frames, names, info) -> None:
        from kronos.training import export_pair, train_predictor, train_tokenizer

        runs = run_dir or out / "runs"
        common = _common(options)
        tok_init, mod_init = _pair_inits(init)
        tok = train_tokenizer(frames, _config(runs / "tokenizer", max_steps=tokenizer_steps, lr=tokenizer_lr,
                                              **common), init=tok_init, names=names)
        _report(tok, "tokenizer")
        pred = train_predictor(frames, tok.best_dir, _config(runs / "predictor", max_steps=predictor_steps,
                                                             lr=predictor_lr, **common), init=mod_init, names=names)
        _report(pred, "predictor")
        if info.is_main:
            export_pair(tok.best_dir, pred.best_dir, out, max_context)
            (out / "training.json").write_text(json.dumps(
                {"data": names, "tokenizer": _summary(tok), "predictor": _summary(pred)}, indent=2) + "\n")
            _say(f"pair written to {out} (load with KronosPredictor.from_pretrained('{out}'))")
    _run(action)


def _pair_inits(init: str) -> tuple[str, str]:
    """A size names both halves; a pair (name or directory) gives its tokenizer and model."""
    from kronos.training import SIZE_NAMES

    if init.lower() in SIZE_NAMES:
        return init, init
    path = Path(init).expanduser()
    if (path / "tokenizer").is_dir() and (path / "model").is_dir():
        return str(path / "tokenizer"), str(path / "model")
    return init, init  # from_pretrained resolves a pair name to the right half


def _summary(result) -> dict:
    return {"steps": result.step, "best_val_loss": result.best_val_loss, "best_step": result.best_step,
            "last_train_loss": result.last_train_loss, "elapsed_s": round(result.elapsed_s, 1)}
