"""Fine-tuning cost: our training step against the published training step, and a whole
walk-forward fine-tuned backtest.

1. One predictor training step (tokenizer encode without gradients, forward, next-token
   loss on s1 and s2, backward, gradient clipping, AdamW), on the same batch of windows of
   the bundled sample, for the bundled model (kronos-nano) and the Kronos-mini config
   (random weights): ours (`kronos.training.PredictorStage`, what every fold runs) against
   the published code's step (`kronos-model-arch==0.1.0`, the step of its
   finetune/train_predictor.py), timed in the same run. Tokens per second = windows x
   (lookback + horizon - 1) per step over its time. Before timing, both compute the loss of
   the same batch in training mode with dropout off and the s2 head conditioned on the true
   s1 tokens (teacher forcing, what our step does): the losses agree to float precision.
   The published script's own step conditions the s2 head on s1 tokens *sampled* from the
   s1 logits instead (its forward without `use_teacher_forcing`); that is the step timed.
2. The walk-forward backtest of the bundled sample's last quarter with monthly refits
   (`--refit-every 30D`, bundled model), the zero-shot comparison included.

    python benchmarks/bench_finetune.py                    # ~ both parts in full
    python benchmarks/bench_finetune.py --bars 300 --steps 3   # a quick look
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import build_pair, header  # noqa: E402

from kronos import Kronos, KronosTokenizer, published  # noqa: E402
from kronos.hub import resolve_spec  # noqa: E402
from kronos.training import PredictorStage, WindowDataset, prepare_series  # noqa: E402
from kronos_trader.data import SAMPLE_DATA_PATH, load_candles  # noqa: E402


def batch_of(candles, lookback: int, horizon: int, size: int):
    data = WindowDataset(prepare_series(candles), lookback, horizon, "train", 0.2, stride=horizon)
    return data.batch(range(size))


def ours_step(tokenizer, model, x, stamp):
    stage = PredictorStage(model, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        loss, _ = stage.loss(model, x, stamp, contextlib.nullcontext)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
    return step, lambda: float(stage.loss(model, x, stamp, contextlib.nullcontext)[0])


def published_step(p_tok, p_model, x, stamp):
    """The step of the published finetune/train_predictor.py (and its teacher-forced loss)."""
    optimizer = torch.optim.AdamW(p_model.parameters(), lr=1e-5)

    def loss_of(teacher: bool = False):
        with torch.no_grad():
            s1, s2 = p_tok.encode(x, half=True)
        logits = p_model(s1[:, :-1], s2[:, :-1], stamp[:, :-1, :], use_teacher_forcing=teacher, s1_targets=s1[:, 1:])
        return p_model.head.compute_loss(logits[0], logits[1], s1[:, 1:], s2[:, 1:])[0]

    def step():
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(p_model.parameters(), 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
    return step, lambda: float(loss_of(teacher=True))


@contextlib.contextmanager
def no_dropout(*modules):
    drops = [m for module in modules for m in module.modules() if isinstance(m, torch.nn.Dropout)]
    kept = [m.p for m in drops]
    for m in drops:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(drops, kept):
            m.p = p


def timed(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def fresh_pair(name: str):
    """Float32 training copies: the bundled pair from its checkpoint, Kronos-mini random."""
    if name == "kronos-nano":
        spec = resolve_spec(name)
        return KronosTokenizer.from_pretrained(spec.tokenizer), Kronos.from_pretrained(spec.model)
    tok, model, _ = build_pair("kronos-mini")
    return tok, model


def training_rows(args, candles) -> list[str]:
    rows = []
    x, stamp = batch_of(candles, args.lookback, args.horizon, args.batch)
    tokens = args.batch * (args.lookback + args.horizon - 1)
    for name in ("kronos-nano", "Kronos-mini"):
        tok, model = fresh_pair(name.lower())
        p_tok, p_model = published.published_pair(tok, model)
        ours, ours_loss = ours_step(tok.eval(), model.train(), x, stamp)
        pub, pub_loss = published_step(p_tok.eval(), p_model.train(), x, stamp)
        with torch.no_grad(), no_dropout(model, p_model):
            diff = abs(ours_loss() - pub_loss())
        ours_s, pub_s = timed(ours, args.steps), timed(pub, args.steps)
        rows.append(f"{name:12} {tokens / ours_s:10.0f} {tokens / pub_s:12.0f} {pub_s / ours_s:8.2f}x  "
                    f"loss diff {diff:.1e}")
    return rows


def walk_forward(args, candles) -> str:
    from kronos_trader.backtest.runner import run_backtest
    from kronos_trader.config import parse_settings

    with tempfile.TemporaryDirectory() as folder:
        settings = parse_settings({
            "model": {"name": "kronos-nano", "device": "cpu"},
            "forecast": {"sample_count": 8},
            "finetune": {"refit_every": args.refit_every, "train_bars": args.train_bars,
                         "cache_dir": str(Path(folder) / "folds")},
            "database": {"url": "sqlite://"}})
        frame = candles.iloc[-(args.bars + args.train_bars):]
        start = time.perf_counter()
        result = run_backtest(settings, frame, "BTC/USDT", "1h", None, progress=False)
        seconds = time.perf_counter() - start
    folds = result.finetune.folds
    trained = sum(f.get("seconds") or 0 for f in folds)
    return (f"walk-forward backtest: {args.bars} bars after {args.train_bars} training bars, refit every "
            f"{args.refit_every}: {len(folds)} folds, {seconds:.0f}s in all, of which training {trained:.0f}s "
            f"({result.forecasts_computed} windows forecast for trading, then the zero-shot comparison)\n"
            f"  {result.finetune.verdict()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookback", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--bars", type=int, default=2190, help="backtest bars (default: the last quarter)")
    parser.add_argument("--train-bars", type=int, default=2000)
    parser.add_argument("--refit-every", default="30D")
    parser.add_argument("--skip-backtest", action="store_true")
    args = parser.parse_args()
    if not published.available():
        raise SystemExit(f"the baseline needs the published code: {published.INSTALL_HINT}")
    torch.manual_seed(0)
    print(header())
    candles = load_candles(SAMPLE_DATA_PATH)
    print(f"one predictor training step, batch {args.batch} x ({args.lookback} + {args.horizon}) bars, "
          f"mean of {args.steps} steps")
    print(f"{'model':12} {'ours tok/s':>10} {'published':>12} {'speed-up':>9}")
    for row in training_rows(args, candles):
        print(row)
    if not args.skip_backtest:
        print(walk_forward(args, candles))
    print(header())


if __name__ == "__main__":
    main()
