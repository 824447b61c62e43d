"""kronos.training: windows without look-ahead, falling losses, exact resume, errors, DDP, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from kronos import Kronos, KronosPredictor, KronosTokenizer
from kronos.training import (TrainConfig, TrainingConfigError, TrainingDataError, TrainingError, TrainingStateError,
                             WindowDataset, build_datasets, export_pair, normalise_window, prepare_series,
                             read_metrics, split_point, train_predictor, train_tokenizer, window_starts)
from kronos_trader.data import generate_market

REPO = Path(__file__).resolve().parents[1]
TOK = dict(d_in=6, d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2, ffn_dropout_p=0.0,
           attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=6, s2_bits=6, beta=0.05, gamma0=1.0, gamma=1.1,
           zeta=0.05, group_size=4)
MOD = dict(s1_bits=6, s2_bits=6, n_layers=2, d_model=32, n_heads=2, ff_dim=64, ffn_dropout_p=0.1,
           attn_dropout_p=0.0, resid_dropout_p=0.1, token_dropout_p=0.0, learn_te=True)


def small_cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=out, lookback=32, horizon=8, max_context=64, val_fraction=0.2, batch_size=8,
                max_steps=20, warmup_steps=2, lr=3e-3, eval_every=10, log_every=5, max_val_windows=32,
                progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return generate_market(1200, "1h", seed=3)


@pytest.fixture(scope="module")
def trained_tokenizer(tmp_path_factory, market):
    out = tmp_path_factory.mktemp("tok")
    torch.manual_seed(0)
    result = train_tokenizer(market, small_cfg(out, max_steps=30, lr=5e-3), init=KronosTokenizer(**TOK))
    return result


# --- windows ----------------------------------------------------------------------------------
def test_windows_are_normalised_with_lookback_stats_only(market):
    series = prepare_series(market)
    ds = WindowDataset(series, lookback=32, horizon=8, split="train", val_fraction=0.2)
    x, stamp = ds[5]
    assert x.shape == (40, 6) and stamp.shape == (40, 5)
    past = x[:32].numpy()
    assert np.allclose(past.mean(axis=0), 0, atol=1e-4) and np.allclose(past.std(axis=0), 1, atol=1e-3)
    # perturb the horizon rows of the source: the look-back inputs stay bit-identical
    k, start = ds.index[5]
    values = series[0].values.copy()
    values[start + 32:start + 40] *= 3.0
    perturbed = WindowDataset([type(series[0])(values, series[0].stamps)], 32, 8, "train", 0.2)
    x2, _ = perturbed[5]
    assert torch.equal(x2[:32], x[:32])
    assert not torch.equal(x2[32:], x[32:])
    window = values[start:start + 40]
    assert np.array_equal(normalise_window(window, 32), x2.numpy())
    assert np.abs(normalise_window(window * 1e6 - 1e6 * window[:32].mean(0), 32)).max() <= 5.0


def test_split_is_chronological_per_series(market):
    n, lookback, horizon = len(market), 32, 8
    cut = split_point(n, 0.2)
    train = window_starts(n, lookback, horizon, "train", 0.2)
    val = window_starts(n, lookback, horizon, "val", 0.2, stride=horizon)
    assert train.max() + lookback + horizon <= cut  # training windows end before the cut
    assert (val + lookback >= cut).all()  # validation windows only predict rows after it
    assert val.max() + lookback + horizon <= n
    tr, va = build_datasets([market, market.iloc[:600]], lookback, horizon, 64, val_fraction=0.2)
    assert set(tr.index[:, 0]) == {0, 1} and set(va.index[:, 0]) == {0, 1}


def test_bad_data_errors_are_one_line_value_errors(market, tmp_path):
    cases = [
        (lambda: build_datasets(market.iloc[:0], 32, 8, 64), TrainingDataError, "empty"),
        (lambda: build_datasets([], 32, 8, 64), TrainingDataError, "empty"),
        (lambda: build_datasets(market.iloc[:30], 32, 8, 64), TrainingDataError, "too short"),
        (lambda: build_datasets(market.iloc[:60], 32, 8, 64, val_fraction=0.05), TrainingDataError,
         "validation split has no windows"),
        (lambda: build_datasets(market, 60, 8, 64), TrainingDataError, "does not fit max_context"),
        (lambda: build_datasets(market.drop(columns=["close"]), 32, 8, 64), TrainingDataError, "close"),
    ]
    for call, kind, text in cases:
        with pytest.raises(kind) as info:
            call()
        assert isinstance(info.value, ValueError) and text in str(info.value) and "\n" not in str(info.value)
    # tokenizer and predictor bits must match
    with pytest.raises(TrainingConfigError, match="bits"):
        train_predictor(market, KronosTokenizer(**TOK), small_cfg(tmp_path / "p"), init=Kronos(**{**MOD, "s1_bits": 8}))
    # an unreadable training state
    bad = tmp_path / "bad" / "last"
    bad.mkdir(parents=True)
    (bad / "training_state.json").write_text("{not json")
    with pytest.raises(TrainingStateError, match="unreadable"):
        train_tokenizer(market, small_cfg(tmp_path / "bad", resume=True), init=KronosTokenizer(**TOK))
    # an unreadable checkpoint to start from
    broken = tmp_path / "broken"
    KronosTokenizer(**TOK).save_pretrained(broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(TrainingStateError, match="unreadable") as info:
        train_predictor(market, broken, small_cfg(tmp_path / "q"), init=Kronos(**MOD))
    assert "\n" not in str(info.value)
    assert issubclass(TrainingStateError, TrainingError) and issubclass(TrainingError, ValueError)


# --- losses, checkpoints, resume --------------------------------------------------------------
def test_tokenizer_and_predictor_losses_fall(trained_tokenizer, market, tmp_path):
    losses = [h["loss"] for h in trained_tokenizer.history]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert (trained_tokenizer.out_dir / "best" / "model.safetensors").is_file()
    assert read_metrics(trained_tokenizer.out_dir)[-1]["val_loss"] is not None
    torch.manual_seed(0)
    pred = train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "pred", max_steps=30),
                           init=Kronos(**MOD))
    losses = [h["loss"] for h in pred.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    summary = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    assert summary["stage"] == "predictor" and summary["best_val_loss"] == pytest.approx(pred.best_val_loss)
    # fine-tuning starts from the checkpoint's weights
    tuned = train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "tune", max_steps=2),
                            init=pred.best_dir)
    assert tuned.history[0]["loss"] < np.mean(losses[:5]) - 0.3
    pair = export_pair(trained_tokenizer.best_dir, pred.best_dir, tmp_path / "pair", max_context=64)
    forecast = KronosPredictor.from_pretrained(str(pair), device="cpu").forecast(
        market.iloc[-48:], pred_len=4, sample_count=3, seed=1, verbose=False)
    assert forecast.paths.shape == (3, 4, 6) and np.isfinite(forecast.paths).all()


def test_resume_continues_identically(trained_tokenizer, market, tmp_path):
    cfg = dict(max_steps=6, eval_every=3, grad_accum=2, log_every=1)
    torch.manual_seed(0)
    full = train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "a", **cfg), init=Kronos(**MOD))
    torch.manual_seed(0)
    first = train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "b", stop_at_step=3, **cfg),
                            init=Kronos(**MOD))
    assert first.step == 3
    with pytest.raises(TrainingStateError, match="already holds"):
        train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "b", **cfg), init=Kronos(**MOD))
    rest = train_predictor(market, trained_tokenizer.best_dir, small_cfg(tmp_path / "b", resume=True, **cfg),
                           init=Kronos(**MOD))
    assert [h["step"] for h in rest.history] == [4, 5, 6]
    expected = [h["loss"] for h in full.history[3:]]
    assert [h["loss"] for h in rest.history] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    a = Kronos.from_pretrained(tmp_path / "a" / "last").state_dict()
    b = Kronos.from_pretrained(tmp_path / "b" / "last").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "b")]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # no duplicated rows after the resume


# --- data-parallel and CLI -----------------------------------------------------------------------
APP = textwrap.dedent("""
    import typer
    from kronos_trader.commands.train import register
    app = typer.Typer()
    @app.callback()
    def main():
        pass
    register(app)
    app()
""")


def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    out = tmp_path / "pair"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "all", "--out", str(out), "--synthetic", "2", "--synthetic-bars", "800", "--lookback", "32",
           "--horizon", "8", "--max-context", "64", "--tokenizer-steps", "16", "--predictor-steps", "16",
           "--tokenizer-lr", "3e-3", "--predictor-lr", "3e-3", "--batch-size", "8", "--warmup", "2",
           "--eval-every", "8", "--log-every", "4", "--max-val-windows", "16", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("tokenizer", "predictor"):
        summary = json.loads((out / "runs" / stage / "metrics.json").read_text())
        assert summary["world_size"] == 2
        assert summary["replica_max_abs_diff"] == 0.0  # the replicas hold identical weights
        rows = read_metrics(out / "runs" / stage)
        assert rows[-1]["loss"] < rows[0]["loss"]
    assert json.loads((out / "kronos.json").read_text()) == {"max_context": 64}
    KronosPredictor.from_pretrained(str(out), device="cpu")


def test_cli_reports_bad_files_in_one_line(tmp_path):
    from kronos_trader.commands.train import register

    app = typer.Typer()

    @app.callback()
    def main():
        pass

    register(app)
    bad = tmp_path / "broken.csv"
    bad.write_text("timestamp,open,high\n2024-01-01,1\n")
    for args in (["train", "tokenizer", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "missing.csv")],
                 ["train", "tokenizer", "--out", str(tmp_path / "r"), "--data", str(bad)],
                 ["train", "predictor", "--out", str(tmp_path / "r"), "--tokenizer", str(tmp_path / "nothing"),
                  "--data", str(tmp_path / "missing.csv")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_bundled_nano_loads_offline_and_forecasts(monkeypatch, market):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundled = REPO / "kronos" / "bundled" / "kronos-nano"
    assert (bundled / "README.md").is_file() and "synthetic" in (bundled / "README.md").read_text().lower()
    predictor = KronosPredictor.from_pretrained("kronos-nano", device="cpu")
    assert predictor.max_context == 512
    forecast = predictor.forecast(market.iloc[-256:], pred_len=6, sample_count=4, seed=0, verbose=False)
    assert forecast.paths.shape == (4, 6, 6) and np.isfinite(forecast.paths).all()
    size = sum(p.stat().st_size for p in bundled.rglob("*") if p.is_file())
    assert size < 8_000_000
