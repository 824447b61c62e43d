"""Against the published Kronos code itself (PyPI `kronos-model-arch==0.1.0`, package `model`).

One random-weight checkpoint with the official configs is loaded into both; context tokens
must be bit-identical, greedy forecasts must agree. `.ci/run` installs the package.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from factories import make_candles

from kronos import (
    MODEL_CONFIGS,
    TOKENIZER_CONFIGS,
    Kronos,
    KronosPredictor,
    KronosTokenizer,
    Sampling,
    generate_cached,
    published,
)
from kronos.generation import (
    _encode as generation_encode,  # what generation tokenizes the context with
)

pytestmark = pytest.mark.skipif(not published.available(),
                                reason=f"the published Kronos code is not installed ({published.INSTALL_HINT})")


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-base"]).eval()
    model = Kronos(**MODEL_CONFIGS["Kronos-mini"]).eval()
    return tokenizer, model


def _windows(count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = [(1, 400), (3, 256), (8, 64), (2, 37), (1, 1), (5, 130)]
    for k in range(count):
        b, n = shapes[k % len(shapes)]
        yield torch.randn(b, n, 6, generator=g).clamp(-5, 5) * (0.2 + k % 3)


def _assert_same_tokens(tokenizer, p_tok, x):
    expected = published.published_encode(p_tok, x)
    with torch.inference_mode():
        ours = generation_encode(tokenizer, x)
    assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])


def test_context_tokens_are_bit_identical(pair):
    tokenizer, model = pair
    p_tok, _ = published.published_pair(tokenizer, model)
    for x in _windows(30, seed=1):
        _assert_same_tokens(tokenizer, p_tok, x)


def test_tokens_identical_where_code_bits_lie_at_zero(pair):
    """Shift the quantizer's biases so that, for each of the 20 code bits, one row's value
    before quantisation is zero up to rounding: any difference in arithmetic flips them."""
    tokenizer, model = pair
    tokenizer = KronosTokenizer(tokenizer.config).eval()
    tokenizer.load_state_dict(pair[0].state_dict())
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 300, 6, generator=g).clamp(-5, 5)
    with torch.inference_mode():
        z = tokenizer._encode_latent(x).reshape(-1, tokenizer.codebook_dim)
    rows = torch.randint(0, z.shape[0], (tokenizer.codebook_dim,), generator=g)
    with torch.no_grad():
        tokenizer.quant_embed.bias -= z[rows, torch.arange(tokenizer.codebook_dim)]
    with torch.inference_mode():
        near = tokenizer._encode_latent(x).reshape(-1, tokenizer.codebook_dim)[rows, torch.arange(20)]
    assert near.abs().max() < 1e-6, "the construction must put bits at zero"
    p_tok, _ = published.published_pair(tokenizer, model)
    _assert_same_tokens(tokenizer, p_tok, x)
    for chunk in (x[:1], x[1:3], x.repeat(2, 1, 1)):  # other batch shapes, same rows
        _assert_same_tokens(tokenizer, p_tok, chunk)


@pytest.mark.parametrize("n", [2136])
def test_long_window_codes_at_zero_are_identical_in_every_batch_shape_and_thread_count(n):
    """Issue 26 reported three greedy windows (a 2136-bar Kronos-mini window, a predict_batch
    series, a 600-bar one) diverging through a code bit within ~1e-6 of zero. On this CPU
    the encoder's values before quantisation are the published ones bit for bit at these
    lengths, alone, in a batch, repeated per sample path as the published code encodes
    them, and on one or two threads: with bits put at zero, every shape gives its tokens."""
    torch.manual_seed(1)
    tokenizer = KronosTokenizer(**TOKENIZER_CONFIGS["Kronos-Tokenizer-2k"]).eval()
    model = Kronos(**MODEL_CONFIGS["Kronos-mini"]).eval()
    g = torch.Generator().manual_seed(n)
    x = torch.randn(2, n, 6, generator=g).clamp(-5, 5)
    with torch.inference_mode():
        z = tokenizer._encode_latent(x).reshape(-1, tokenizer.codebook_dim)
    rows = torch.randint(0, z.shape[0], (tokenizer.codebook_dim,), generator=g)
    with torch.no_grad():
        tokenizer.quant_embed.bias -= z[rows, torch.arange(tokenizer.codebook_dim)]
    p_tok, _ = published.published_pair(tokenizer, model)
    with torch.inference_mode():
        ours = tokenizer._encode_latent(x)
        expected = p_tok.quant_embed(_published_encoder(p_tok, x))
    assert ours.reshape(-1, 20)[rows, torch.arange(20)].abs().max() < 1e-6, "bits must lie at zero"
    assert torch.equal(ours, expected)
    threads = torch.get_num_threads()
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            for chunk in (x[1:], x.repeat_interleave(2, 0)):  # alone, per sample path (and batched above)
                _assert_same_tokens(tokenizer, p_tok, chunk)
    finally:
        torch.set_num_threads(threads)


def _published_encoder(p_tok, x: torch.Tensor) -> torch.Tensor:
    z = p_tok.embed(x)
    for layer in p_tok.encoder:
        z = layer(z)
    return z


@pytest.mark.parametrize("b,n,h,m", [(2, 48, 16, 64), (1, 60, 12, 64), (3, 30, 8, 512)])
def test_greedy_forecasts_agree_with_the_published_code(pair, b, n, h, m):
    """Including a window that slides (context + steps > max_context) and one longer than it."""
    tokenizer, model = pair
    p_tok, p_model = published.published_pair(tokenizer, model)
    g = torch.Generator().manual_seed(n)
    x = torch.randn(b, n, 6, generator=g).clamp(-5, 5)
    stamps = torch.stack([torch.randint(0, k, (b, n + h), generator=g) for k in (60, 24, 7, 32, 13)], -1).float()
    expected = published.published_forecast(p_tok, p_model, x, stamps[:, :n], stamps[:, n:], m, h, top_k=1)
    ours = generate_cached(tokenizer, model, x, stamps[:, :n], stamps[:, n:], m, h, Sampling(1.0, 1, 1.0),
                           torch.rand(b, 1, h, 2, generator=g))
    np.testing.assert_allclose(ours[:, 0].numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Series.dt.weekday")
def test_predictor_matches_the_published_predictor(pair):
    tokenizer, model = pair
    p_tok, p_model = published.published_pair(tokenizer, model)
    pub = published._module().KronosPredictor(p_model, p_tok, device="cpu", max_context=512)
    df = make_candles(120)
    future = pd.date_range(df.index[-1], periods=11, freq="h")[1:]
    expected = pub.predict(df, df.index.to_series(), future.to_series(), pred_len=10, T=1.0, top_k=1,
                           verbose=False)
    ours = KronosPredictor(model, tokenizer, device="cpu", max_context=512).predict(
        df, y_timestamp=future, pred_len=10, top_k=1, verbose=False)
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=1e-3)


def _capture_encodes(monkeypatch, p_tok) -> dict:
    """Record what each side's tokenizer encodes and returns: (input rows, (s1, s2))."""
    from kronos import generation

    seen: dict = {}
    real_pub, real_ours = p_tok.encode, generation._encode

    def pub_encode(x, half=False):
        seen["pub"] = (x.clone(), real_pub(x, half))
        return seen["pub"][1]

    def our_encode(tokenizer, x):
        seen["ours"] = (x.clone(), real_ours(tokenizer, x))
        return seen["ours"][1]

    monkeypatch.setattr(p_tok, "encode", pub_encode)
    monkeypatch.setattr(generation, "_encode", our_encode)
    return seen


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Series.dt.weekday")
@pytest.mark.parametrize("dtype,drop", [(np.float64, []), (np.float32, ["amount"]), (np.float32, []),
                                        (np.float64, ["amount"])])
@pytest.mark.parametrize("samples", [1, 3])
def test_context_tokens_match_the_published_predictor_on_real_bars(pair, sample_candles, monkeypatch, dtype, drop,
                                                                   samples):
    """Issue 26: parity on real bars through both predictors, batch shapes included (the
    published code encodes every sample path's copy; ours each series once). A float32
    frame without `amount` used to differ: the published code fills it in the frame's own
    dtype (pandas), ours computed it in float64."""
    tokenizer, model = pair
    p_tok, p_model = published.published_pair(tokenizer, model)
    pub = published._module().KronosPredictor(p_model, p_tok, device="cpu", max_context=512)
    ours = KronosPredictor(model, tokenizer, device="cpu", max_context=512)
    seen = _capture_encodes(monkeypatch, p_tok)
    frames = [sample_candles.iloc[s:s + 256].drop(columns=drop).astype(dtype) for s in (0, 72, 144)]
    futures = [pd.date_range(f.index[-1], periods=3, freq="h")[1:] for f in frames]
    pub.predict_batch(frames, [f.index.to_series() for f in frames], [y.to_series() for y in futures], pred_len=2,
                      T=1.0, top_k=1, sample_count=samples, verbose=False)
    ours.predict_batch(frames, y_timestamp_list=list(futures), pred_len=2, top_k=1, sample_count=samples,
                       verbose=False)
    (x_pub, (s1_pub, s2_pub)), (x_ours, (s1_ours, s2_ours)) = seen["pub"], seen["ours"]
    assert torch.equal(x_ours, x_pub[::samples]), "the normalised rows differ"
    assert torch.equal(s1_ours, s1_pub[::samples]) and torch.equal(s2_ours, s2_pub[::samples])
