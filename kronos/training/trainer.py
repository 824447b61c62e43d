"""Stage 1 (tokenizer) and stage 2 (predictor) training loops.

Both stages share one loop: AdamW with linear warm-up and cosine decay, gradient clipping
and accumulation, bf16/fp16 autocast on GPU only, per-step seeding (so a resumed run draws
the same dropout masks and batches as an uninterrupted one), periodic validation, `last/`
and `best/` checkpoints in `save_pretrained` format and a metrics CSV/JSON log. Under
`torchrun` every process trains a DistributedDataParallel replica on its DistributedSampler
shard; only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from ..hub import PAIR_FILE, CheckpointError
from ..model import Kronos
from ..tokenizer import KronosTokenizer
from .data import WindowDataset, build_datasets
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, replica_divergence
from .errors import TrainingConfigError, TrainingDataError, TrainingStateError
from .sizes import model_size, tokenizer_size
from .state import has_state, load_state, optimizer_state_from_flat, save_checkpoint

METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"


@dataclass
class TrainConfig:
    """Settings of one training stage. `batch_size` is per process and micro-batch; the
    effective batch is batch_size * grad_accum * processes."""

    out_dir: str | Path = "runs/train"
    lookback: int = 256
    horizon: int = 32
    max_context: int = 512
    val_fraction: float = 0.2
    stride: int = 1
    val_stride: int | None = None
    max_val_windows: int | None = 512
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 1000
    stop_at_step: int | None = None  # stop (and checkpoint) early, keeping the max_steps schedule
    lr: float = 4e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    clip_grad: float = 1.0
    eval_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16, else fp16, on GPU; off on CPU), bf16, fp16, off
    clip: float = 5.0
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [(self.batch_size >= 1, "batch_size must be >= 1"), (self.grad_accum >= 1, "grad_accum must be >= 1"),
                  (self.max_steps >= 1, "max_steps must be >= 1"), (self.lr > 0, "lr must be > 0"),
                  (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
                  (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
                  (self.eval_every >= 1 and self.log_every >= 1, "eval_every and log_every must be >= 1"),
                  (self.amp in ("auto", "bf16", "fp16", "off"), "amp must be auto, bf16, fp16 or off"),
                  (self.clip_grad >= 0, "clip_grad must be >= 0 (0 disables clipping)")]
        for ok, message in checks:
            if not ok:
                raise TrainingConfigError(message)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class TrainResult:
    stage: str
    out_dir: Path
    step: int
    best_val_loss: float | None
    best_step: int | None
    last_train_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per optimizer step (this process)
    elapsed_s: float = 0.0

    @property
    def best_dir(self) -> Path:
        best = self.out_dir / "best"
        return best if best.is_dir() else self.out_dir / "last"


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --- stages --------------------------------------------------------------------------------
class TokenizerStage:
    """loss = (mse(coarse recon) + mse(full recon) + bsq_loss) / 2."""

    name = "tokenizer"
    components = ("recon_pre", "recon_all", "bsq")

    def __init__(self, module: KronosTokenizer):
        self.module = module

    def loss(self, forward: Callable, x: torch.Tensor, stamp: torch.Tensor, autocast) -> tuple[torch.Tensor, list]:
        with autocast():
            (z_pre, z), bsq_loss, _, _ = forward(x)
            recon_pre, recon_all = F.mse_loss(z_pre.float(), x), F.mse_loss(z.float(), x)
            loss = (recon_pre + recon_all + bsq_loss.float()) / 2
        return loss, [recon_pre.detach(), recon_all.detach(), bsq_loss.detach()]


class PredictorStage:
    """Next-token cross-entropy on s1 and s2 over the frozen tokenizer's tokens (teacher forcing)."""

    name = "predictor"
    components = ("ce_s1", "ce_s2")

    def __init__(self, module: Kronos, tokenizer: KronosTokenizer):
        self.module, self.tokenizer = module, tokenizer.eval()
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)

    def loss(self, forward: Callable, x: torch.Tensor, stamp: torch.Tensor, autocast) -> tuple[torch.Tensor, list]:
        with torch.no_grad():
            s1, s2 = self.tokenizer.encode(x)
        with autocast():
            s1_logits, s2_logits = forward(s1[:, :-1], s2[:, :-1], stamp[:, :-1], s1_targets=s1[:, 1:])
            loss, ce_s1, ce_s2 = self.module.head.compute_loss(s1_logits.float(), s2_logits.float(), s1[:, 1:],
                                                               s2[:, 1:])
        return loss, [ce_s1.detach(), ce_s2.detach()]


# --- loading modules -------------------------------------------------------------------------
def _checkpoint_dir(source, kind: str):
    """A run directory (best/ or last/) or a pair directory (tokenizer/ or model/) -> its
    checkpoint folder; anything else is passed to from_pretrained unchanged."""
    path = Path(str(source)).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        for sub in ("best", "last", "tokenizer" if kind == "tokenizer" else "model"):
            if (path / sub / "config.json").is_file():
                return path / sub
    return source


def _load(cls, source, kind: str):
    path = _checkpoint_dir(source, kind)
    try:
        return cls.from_pretrained(path)
    except CheckpointError:
        raise
    except (SafetensorError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingStateError(f"{kind} checkpoint '{path}' is unreadable ({type(exc).__name__}: {exc})") from None


def load_tokenizer(source) -> KronosTokenizer:
    """A `KronosTokenizer`, a run or pair directory, or anything `from_pretrained` accepts."""
    if isinstance(source, KronosTokenizer):
        return source
    return _load(KronosTokenizer, source, "tokenizer")


def load_model(source) -> Kronos:
    """A `Kronos`, a run or pair directory, or anything `from_pretrained` accepts."""
    if isinstance(source, Kronos):
        return source
    return _load(Kronos, source, "model")


def _fresh_or_finetune(kind: str, init, seed: int) -> tuple[torch.nn.Module, str]:
    cls = KronosTokenizer if kind == "tokenizer" else Kronos
    if isinstance(init, cls):
        return init, "given module"
    size = (tokenizer_size if kind == "tokenizer" else model_size)(str(init))
    if size is not None:
        torch.manual_seed(seed)
        return cls(**size), f"size '{init}' (random init)"
    module = load_tokenizer(init) if kind == "tokenizer" else load_model(init)
    return module, f"fine-tuning '{init}'"


def check_bits(tokenizer: KronosTokenizer, model: Kronos) -> None:
    if (tokenizer.s1_bits, tokenizer.s2_bits) != (model.s1_bits, model.s2_bits):
        raise TrainingConfigError(f"tokenizer bits s1={tokenizer.s1_bits}/s2={tokenizer.s2_bits} do not match the "
                                  f"predictor's s1={model.s1_bits}/s2={model.s2_bits}")


# --- public entry points ----------------------------------------------------------------------
def train_tokenizer(data, config: TrainConfig, init="nano", names=None) -> TrainResult:
    """Train (or fine-tune) a tokenizer. `init` is a size ('nano', 'mini', 'small', 'base'),
    a `KronosTokenizer`, or a checkpoint (`from_pretrained` source, run or pair directory)."""
    def build(seed: int) -> tuple[TokenizerStage, str]:
        module, how = _fresh_or_finetune("tokenizer", init, seed)
        return TokenizerStage(module), how
    return _run(build, KronosTokenizer, data, config, names)


def train_predictor(data, tokenizer, config: TrainConfig, init="nano", names=None) -> TrainResult:
    """Train (or fine-tune) a predictor on the tokens of a frozen `tokenizer` (a module, a
    run/pair directory or a `from_pretrained` source)."""
    tok = load_tokenizer(tokenizer)

    def build(seed: int) -> tuple[PredictorStage, str]:
        module, how = _fresh_or_finetune("model", init, seed)
        check_bits(tok, module)
        return PredictorStage(module, tok), how
    return _run(build, Kronos, data, config, names)


def export_pair(tokenizer, model, out_dir: str | Path, max_context: int = 512) -> Path:
    """Write a pair directory (tokenizer/, model/, kronos.json) that
    `KronosPredictor.from_pretrained(out_dir)` loads; sources as for `load_tokenizer`."""
    tok, mod = load_tokenizer(tokenizer), load_model(model)
    check_bits(tok, mod)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out / "tokenizer")
    mod.save_pretrained(out / "model")
    (out / PAIR_FILE).write_text(json.dumps({"max_context": int(max_context)}) + "\n")
    return out


# --- the loop -----------------------------------------------------------------------------------
def _autocast_factory(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()) else torch.float16
    scaler = None
    if dtype == torch.float16:  # bf16 needs no loss scaling
        scaler = torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batches(dataset: WindowDataset, sampler: DistributedSampler, batch: int, start_micro: int,
             per_epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(epoch, x, stamp) micro-batches from global micro-batch `start_micro` on."""
    epoch, offset = divmod(start_micro, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        order = list(sampler)
        for b in range(offset, per_epoch):
            x, stamp = dataset.batch(order[b * batch:(b + 1) * batch])
            yield epoch, x, stamp
        epoch, offset = epoch + 1, 0


def _step_seed(seed: int, rank: int, micro: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + micro * 104_729) % (2 ** 63 - 1)


def _run(build, cls, data, cfg: TrainConfig, names) -> TrainResult:
    info = init_distributed(cfg.device)
    try:
        return _loop(build, cls, data, cfg, names, info)
    finally:
        cleanup(info)


def _loop(build, cls, data, cfg: TrainConfig, names, info: DistInfo) -> TrainResult:
    started = time.perf_counter()
    out = Path(cfg.out_dir)
    train_ds, val_ds = build_datasets(data, cfg.lookback, cfg.horizon, cfg.max_context, cfg.val_fraction,
                                      cfg.stride, cfg.val_stride, cfg.max_val_windows, cfg.clip, names)
    last_dir = out / "last"
    resuming = False
    if has_state(last_dir):
        if cfg.resume:
            resuming = True
        elif not cfg.overwrite:
            raise TrainingStateError(f"{out} already holds a training checkpoint: resume it or choose another "
                                     f"output directory (or overwrite)")
    stage, how = build(cfg.seed)
    module: torch.nn.Module = stage.module
    meta: dict[str, Any] = {}
    if resuming:
        meta, tensors = load_state(last_dir)
        if meta.get("stage") != stage.name:
            raise TrainingStateError(f"{last_dir} holds a {meta.get('stage')} run, not a {stage.name} run")
        module = _load(cls, last_dir, stage.name if stage.name == "tokenizer" else "model")
        if stage.name == "predictor":
            check_bits(stage.tokenizer, module)
        stage.module = module
        how = f"resuming {last_dir} at step {meta['step']}"
    device = info.device
    module.to(device).train()
    if stage.name == "predictor":
        stage.tokenizer.to(device)
    forward = module
    if info.enabled:
        forward = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(_param_groups(module, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    step = 0
    best_val, best_step = None, None
    if resuming:
        try:
            optimizer.load_state_dict(optimizer_state_from_flat(tensors, meta["optimizer"]))
        except (ValueError, KeyError, RuntimeError) as exc:
            raise TrainingStateError(f"{last_dir}: optimizer state does not fit this model ({exc})") from None
        step, best_val, best_step = int(meta["step"]), meta.get("best_val_loss"), meta.get("best_step")
        if meta.get("world_size", info.world_size) != info.world_size:
            warnings.warn(f"resuming with {info.world_size} processes, the run had {meta['world_size']}: the batch "
                          f"order differs from an uninterrupted run", stacklevel=2)
    autocast, scaler = _autocast_factory(device, cfg.amp)

    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    batch = min(cfg.batch_size, len(sampler))
    if batch < 1:
        raise TrainingDataError(f"{len(train_ds)} training windows cannot be shared by {info.world_size} processes")
    if batch < cfg.batch_size and info.is_main:
        warnings.warn(f"only {len(sampler)} training windows per process: micro-batch reduced to {batch}",
                      stacklevel=2)
    per_epoch = len(sampler) // batch
    batches = _batches(train_ds, sampler, batch, step * cfg.grad_accum, per_epoch)

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _prepare_csv(out / METRICS_CSV, stage.components, step if resuming else 0)
    summary_base = {"stage": stage.name, "init": how, "world_size": info.world_size, "device": str(device),
                    "train_windows": len(train_ds), "val_windows": len(val_ds) if val_ds is not None else 0,
                    "series": len(train_ds.series), "module_config": asdict(module.config), "config": _jsonable(asdict(cfg))}
    progress = None
    if info.is_main and cfg.progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=cfg.max_steps, initial=step, desc=f"train {stage.name}", unit="step", dynamic_ncols=True)
        progress.write(f"{stage.name}: {how}; {len(train_ds)} train / {summary_base['val_windows']} val windows "
                       f"from {len(train_ds.series)} series; {info.world_size} process(es) on {device}")

    history: list[dict[str, Any]] = []
    window_acc, loss_acc, comp_acc, n_acc, t_log = 0, 0.0, [0.0] * len(stage.components), 0, time.perf_counter()
    last_loss, last_val = None, meta.get("last_val_loss")
    stop = min(cfg.max_steps, cfg.stop_at_step) if cfg.stop_at_step is not None else cfg.max_steps
    epoch = 0
    while step < stop:
        lr = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss, step_comps = 0.0, [0.0] * len(stage.components)
        for a in range(cfg.grad_accum):
            micro = step * cfg.grad_accum + a
            epoch, x, stamp = next(batches)
            x, stamp = x.to(device, non_blocking=True), stamp.to(device, non_blocking=True)
            torch.manual_seed(_step_seed(cfg.seed, info.rank, micro))
            sync = contextlib.nullcontext() if (not info.enabled or a == cfg.grad_accum - 1) else forward.no_sync()
            with sync:
                loss, comps = stage.loss(forward, x, stamp, autocast)
                scaled = loss / cfg.grad_accum
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            step_loss += float(loss.detach()) / cfg.grad_accum
            step_comps = [s + float(c) / cfg.grad_accum for s, c in zip(step_comps, comps)]
            window_acc += x.shape[0]
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_grad if cfg.clip_grad > 0
                                                         else float("inf")))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if not math.isfinite(step_loss):
            raise TrainingConfigError(f"{stage.name} loss became {step_loss} at step {step}: lower the learning rate")
        history.append({"step": step, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                        **dict(zip(stage.components, step_comps))})
        loss_acc += step_loss
        comp_acc = [s + c for s, c in zip(comp_acc, step_comps)]
        n_acc += 1

        do_eval = val_ds is not None and (step % cfg.eval_every == 0 or step == stop)
        do_save = step % cfg.eval_every == 0 or step == stop
        val_row: dict[str, float] = {}
        if do_eval:
            val_row = _validate(stage, module, val_ds, batch, device, info, autocast)
            last_val = val_row["val_loss"]
        if step % cfg.log_every == 0 or do_eval or step == stop:
            totals = all_reduce_sum([loss_acc, *comp_acc, float(n_acc), float(window_acc)], info)
            n_all = max(totals[-2], 1.0)
            elapsed = time.perf_counter() - t_log
            row = {"step": step, "epoch": epoch, "lr": lr, "loss": totals[0] / n_all,
                   **{c: v / n_all for c, v in zip(stage.components, totals[1:-2])}, "grad_norm": grad_norm,
                   "val_loss": val_row.get("val_loss", ""), "windows_per_s": totals[-1] / max(elapsed, 1e-9),
                   "elapsed_s": time.perf_counter() - started}
            last_loss = row["loss"]
            if info.is_main:
                _append_csv(out / METRICS_CSV, row, stage.components)
                if progress is not None:
                    progress.set_postfix(loss=f"{row['loss']:.4f}", val=f"{last_val:.4f}" if last_val is not None else "-",
                                         lr=f"{lr:.2e}", win_s=f"{row['windows_per_s']:.1f}")
            window_acc, loss_acc, comp_acc, n_acc, t_log = 0, 0.0, [0.0] * len(stage.components), 0, \
                time.perf_counter()
        if do_eval and (best_val is None or last_val < best_val):
            best_val, best_step = last_val, step
            if info.is_main:
                save_checkpoint(out / "best", module)
        divergence = replica_divergence(module, info) if do_save else 0.0
        if do_save and info.is_main:
            state = {"stage": stage.name, "step": step, "best_val_loss": best_val, "best_step": best_step,
                     "last_val_loss": last_val, "world_size": info.world_size,
                     "schedule": {"kind": "warmup_cosine", "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                                  "max_steps": cfg.max_steps, "min_lr_ratio": cfg.min_lr_ratio},
                     "config": _jsonable(asdict(cfg))}
            save_checkpoint(last_dir, module, optimizer, state)
            _write_json(out / METRICS_JSON, {**summary_base, "step": step, "max_steps": cfg.max_steps,
                                             "train_loss": last_loss, "last_val_loss": last_val,
                                             "best_val_loss": best_val, "best_step": best_step,
                                             "replica_max_abs_diff": divergence,
                                             "elapsed_s": time.perf_counter() - started})
        if do_save:
            barrier(info)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    module.eval()
    return TrainResult(stage.name, out, step, best_val, best_step, last_loss, history,
                       time.perf_counter() - started)


@torch.no_grad()
def _validate(stage, module, dataset: WindowDataset, batch: int, device, info: DistInfo, autocast) -> dict:
    module.eval()
    total, comps, count = 0.0, [0.0] * len(stage.components), 0
    mine = list(range(info.rank, len(dataset), info.world_size))
    for b in range(0, len(mine), batch):
        idx = mine[b:b + batch]
        x, stamp = dataset.batch(idx)
        loss, parts = stage.loss(module, x.to(device), stamp.to(device), autocast)
        total += float(loss) * len(idx)
        comps = [s + float(p) * len(idx) for s, p in zip(comps, parts)]
        count += len(idx)
    module.train()
    sums = all_reduce_sum([total, *comps, float(count)], info)
    n = max(sums[-1], 1.0)
    return {"val_loss": sums[0] / n, **{f"val_{c}": v / n for c, v in zip(stage.components, sums[1:-1])}}


def _csv_fields(components) -> list[str]:
    return ["step", "epoch", "lr", "loss", *components, "grad_norm", "val_loss", "windows_per_s", "elapsed_s"]


def _prepare_csv(path: Path, components, keep_until: int) -> None:
    """Start the metrics CSV, or on resume drop rows after the resumed step."""
    names = _csv_fields(components)
    rows = []
    if keep_until > 0 and path.is_file():
        with path.open(newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= keep_until]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _append_csv(path: Path, row: dict, components) -> None:
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=_csv_fields(components), extrasaction="ignore").writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2))
    tmp.replace(path)


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's metrics CSV with numbers parsed."""
    path = Path(out_dir) / METRICS_CSV
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise TrainingStateError(f"{path} is unreadable ({exc.strerror or exc})") from None
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]


__all__ = ["TrainConfig", "TrainResult", "TokenizerStage", "PredictorStage", "train_tokenizer", "train_predictor",
           "export_pair", "load_tokenizer", "load_model", "check_bits", "lr_factor", "read_metrics",
           "CheckpointError"]
