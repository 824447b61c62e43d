"""Opt-in bf16 on the fast path: refused where bf16 is not native, close to float32 where it is."""
from __future__ import annotations

import pytest
import torch
from factories import make_candles

from kronos import KronosPredictor, Sampling, generate_cached, precision
from kronos.fast import FastKronos, fast_path

native = pytest.mark.skipif(precision.cpu_bf16_support() is None, reason="this CPU has no AVX512-BF16 or AMX")


def test_bf16_is_refused_on_a_cpu_without_native_support(mini_pair, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: None)
    tokenizer, model = mini_pair
    with pytest.raises(ValueError, match="needs a CPU with AVX512-BF16 or AMX") as info:
        KronosPredictor(model, tokenizer, device="cpu", precision="bf16")
    assert "\n" not in str(info.value)


def test_unknown_precision_and_bf16_on_the_reference_path_are_errors(mini_pair, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "avx512_bf16")
    tokenizer, model = mini_pair
    with pytest.raises(ValueError, match="precision must be one of float32, bf16"):
        KronosPredictor(model, tokenizer, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="fast path only"):
        KronosPredictor(model, tokenizer, device="cpu", precision="bf16", cached=False)


def test_precision_is_a_model_setting():
    from kronos_trader.config import ConfigError, parse_settings

    assert parse_settings({"model": {"precision": "bf16"}}).model.precision == "bf16"
    assert parse_settings({}).model.precision == "float32"
    with pytest.raises(ConfigError):
        parse_settings({"model": {"precision": "half"}})


@native
def test_bf16_logits_stay_close_to_float32(mini_pair):
    _, model = mini_pair
    s1 = torch.randint(0, 1024, (3, 40), generator=torch.Generator().manual_seed(0))
    stamp = torch.zeros(3, 40, 5)
    with torch.inference_mode():
        ref = fast_path(model, FastKronos, torch.float32)
        low = fast_path(model, FastKronos, torch.bfloat16)
        h32 = ref.prefill(s1, s1, stamp, *ref.new_caches(3, 40, 1, 0))
        h16 = low.prefill(s1, s1, stamp, *low.new_caches(3, 40, 1, 0))
        l32, l16 = ref.s1_logits(h32), low.s1_logits(h16)
    assert l16.dtype == torch.float32
    assert (l16 - l32).abs().max() < 0.1 * l32.abs().max()
    assert (l16.argmax(-1) == l32.argmax(-1)).float().mean() >= 2 / 3


@native
def test_bf16_forecasts_are_paths_near_float32(mini_pair):
    tokenizer, model = mini_pair
    frames = [make_candles(60, seed=k) for k in range(3)]
    run = {"pred_len": 6, "sample_count": 4, "verbose": False, "seed": 1}
    exact = KronosPredictor(model, tokenizer, device="cpu", max_context=64).forecast_batch(frames, **run)
    low = KronosPredictor(model, tokenizer, device="cpu", max_context=64, precision="bf16").forecast_batch(frames, **run)
    for a, b in zip(exact, low):
        assert b.paths.shape == a.paths.shape and torch.isfinite(torch.from_numpy(b.paths)).all()
        spread = a.paths[..., 3].std() + 1e-9
        assert abs(b.paths[..., 3].mean() - a.paths[..., 3].mean()) < 3 * spread


def test_generate_cached_takes_the_dtype(mini_pair):
    tokenizer, model = mini_pair
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, 6, generator=g)
    stamps = torch.zeros(1, 24, 5)
    u = torch.rand(1, 1, 4, 2, generator=g)
    out = generate_cached(tokenizer, model, x, stamps[:, :20], stamps[:, 20:], 64, 4, Sampling(1.0, 1, 1.0), u,
                          torch.float32)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 4, 6)
