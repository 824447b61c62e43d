"""The cached generator reproduces the published (uncached) algorithm exactly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kronos import KronosPredictor, Sampling, generate_cached, generate_reference
from factories import make_candles

GREEDY = dict(T=1.0, top_k=1, top_p=1.0)


def _inputs(b: int, n: int, h: int, s: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, 6, generator=g).clamp(-5, 5)
    xs = torch.stack([torch.randint(0, k, (b, n + h), generator=g) for k in (60, 24, 7, 32, 13)], -1).float()
    return x, xs[:, :n], xs[:, n:], torch.rand(b, s, h, 2, generator=g)


@pytest.mark.parametrize("b,n,h,s,m", [
    (1, 8, 5, 1, 64),     # short context
    (2, 40, 20, 1, 64),   # context + steps within max_context
    (2, 50, 30, 2, 64),   # context + steps beyond it: the window slides
    (2, 50, 30, 1, 64),   # ... with one path (the window runs in one pass)
    (1, 100, 12, 2, 64),  # context longer than max_context
    (2, 30, 16, 4, 64),   # several sample paths
])
def test_cached_equals_reference_greedy(mini_pair, b, n, h, s, m):
    tokenizer, model = mini_pair
    x, xs, ys, u = _inputs(b, n, h, s)
    ref = generate_reference(tokenizer, model, x, xs, ys, m, h, Sampling(**GREEDY), u)
    out = generate_cached(tokenizer, model, x, xs, ys, m, h, Sampling(**GREEDY), u)
    assert out.shape == (b, s, h, 6)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_cached_equals_reference_when_sampling(mini_pair):
    """With the same random numbers, sampled paths match too (top-p and temperature)."""
    tokenizer, model = mini_pair
    x, xs, ys, u = _inputs(2, 30, 20, 4, seed=3)
    sampling = Sampling(T=0.8, top_k=0, top_p=0.9)
    ref = generate_reference(tokenizer, model, x, xs, ys, 64, 20, sampling, u)
    out = generate_cached(tokenizer, model, x, xs, ys, 64, 20, sampling, u)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out[:, 0], out[:, 1]), "paths with different random numbers should differ"


def _predictor(pair, cached=True, max_context=64):
    tokenizer, model = pair
    return KronosPredictor(model, tokenizer, device="cpu", max_context=max_context, cached=cached)


def test_predict_batch_unequal_lengths_matches_reference_and_single(mini_pair):
    frames = [make_candles(n, seed=n) for n in (30, 45, 30, 70)]
    cached = _predictor(mini_pair).predict_batch(frames, pred_len=12, verbose=False, seed=5, **GREEDY)
    reference = _predictor(mini_pair, cached=False).predict_batch(frames, pred_len=12, verbose=False, seed=5,
                                                                   **GREEDY)
    for a, b, df in zip(cached, reference, frames):
        pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-3)
        single = _predictor(mini_pair).predict(df, pred_len=12, verbose=False, **GREEDY)
        pd.testing.assert_frame_equal(a, single, rtol=1e-4, atol=1e-3)


def test_batch_with_per_series_seeds_equals_single_calls(mini_pair):
    frames = [make_candles(40, seed=k) for k in range(3)]
    predictor = _predictor(mini_pair)
    batch = predictor.forecast_batch(frames, pred_len=8, sample_count=3, verbose=False, seed=[11, 12, 13])
    for df, seed, f in zip(frames, (11, 12, 13), batch):
        single = predictor.forecast(df, pred_len=8, sample_count=3, verbose=False, seed=seed)
        np.testing.assert_allclose(f.paths, single.paths, rtol=1e-5, atol=1e-4)


def test_published_output_format(mini_pair):
    df = make_candles(50).reset_index()
    x_ts = df["timestamps"]
    y_ts = pd.Series(pd.date_range(x_ts.iloc[-1] + pd.Timedelta("1h"), periods=6, freq="h"), name="timestamps")
    out = _predictor(mini_pair).predict(df, x_ts, y_ts, pred_len=6, verbose=False, seed=0)
    assert list(out.columns) == ["open", "high", "low", "close", "volume", "amount"]
    assert list(out.index) == list(y_ts)
    assert np.isfinite(out.to_numpy()).all()


def test_future_stamps_are_inferred(mini_pair):
    daily = make_candles(60, freq="B")
    out = _predictor(mini_pair).predict(daily, pred_len=5, verbose=False, seed=0)
    expected = pd.bdate_range(daily.index[-1] + pd.offsets.BDay(), periods=5)
    assert list(out.index) == list(expected)
    minutes = make_candles(60, freq="15min").drop(columns="volume")
    out = _predictor(mini_pair).predict(minutes, pred_len=3, verbose=False, seed=0)
    assert out.index[0] - minutes.index[-1] == pd.Timedelta("15min")


def test_probabilistic_forecast(mini_pair):
    df = make_candles(60)
    predictor = _predictor(mini_pair)
    f = predictor.forecast(df, pred_len=10, sample_count=16, verbose=False, seed=7)
    assert f.paths.shape == (16, 10, 6)
    levels = sorted(f.quantiles)
    assert levels == [0.05, 0.25, 0.5, 0.75, 0.95]
    for lo, hi in zip(levels, levels[1:]):
        assert (f.quantiles[lo].to_numpy() <= f.quantiles[hi].to_numpy() + 1e-9).all()
    assert ((f.p_up >= 0) & (f.p_up <= 1)).all()
    np.testing.assert_allclose(f.p_up.to_numpy(), (f.paths[:, :, 3] > df["close"].iloc[-1]).mean(0))
    np.testing.assert_allclose(f.mean.to_numpy(), f.paths.mean(0), rtol=1e-4, atol=1e-3)
    mean = predictor.predict(df, pred_len=10, sample_count=16, verbose=False, seed=7)
    pd.testing.assert_frame_equal(mean, f.mean)
    again = predictor.forecast(df, pred_len=10, sample_count=16, verbose=False, seed=7)
    np.testing.assert_array_equal(again.paths, f.paths)
    other = predictor.forecast(df, pred_len=10, sample_count=16, verbose=False, seed=8)
    assert not np.array_equal(other.paths, f.paths)
    summary = f.summary()
    assert list(summary.columns) == ["mean", "q05", "q25", "q50", "q75", "q95", "p_up"]


def test_missing_volume_and_amount_follow_published_rules(mini_pair):
    predictor = _predictor(mini_pair)
    df = make_candles(40)
    no_amount = predictor.predict(df, pred_len=4, verbose=False, seed=1, **GREEDY)
    explicit = df.assign(amount=df["volume"] * df[["open", "high", "low", "close"]].mean(axis=1))
    pd.testing.assert_frame_equal(no_amount, predictor.predict(explicit, pred_len=4, verbose=False, seed=1, **GREEDY))
    no_volume = predictor.predict(df.drop(columns="volume"), pred_len=4, verbose=False, seed=1, **GREEDY)
    zeros = predictor.predict(df.assign(volume=0.0, amount=0.0), pred_len=4, verbose=False, seed=1, **GREEDY)
    pd.testing.assert_frame_equal(no_volume, zeros)


BAD_INPUTS = [
    (lambda df: df.drop(columns=["close", "low"]), {}, "lacks column\\(s\\) low, close"),
    (lambda df: df.assign(close=df["close"].astype(str)), {}, "column 'close' is not numeric"),
    (lambda df: df.assign(high=np.where(np.arange(len(df)) == 7, np.nan, df["high"])), {},
     "column 'high' has a NaN or infinite value at row 7"),
    (lambda df: df.assign(volume=np.where(np.arange(len(df)) == 3, np.inf, df["volume"])), {},
     "column 'volume' has a NaN or infinite value at row 3"),
    (lambda df: df.iloc[:0], {}, "df is empty"),
    (lambda df: df.iloc[[0, 2, 1, 3]], {}, "not strictly increasing at position 2"),
    (lambda df: df, {"x_timestamp": pd.date_range("2024-01-01", periods=5, freq="h")}, "has 5 stamps but 40"),
    (lambda df: df, {"pred_len": 0}, "pred_len must be an integer >= 1"),
    (lambda df: df, {"pred_len": 65}, "pred_len 65 exceeds the model's context of 64"),
    (lambda df: df, {"sample_count": 0}, "sample_count must be an integer >= 1"),
    (lambda df: df, {"T": 0}, "T \\(temperature\\) must be > 0"),
    (lambda df: df, {"top_p": 0}, "top_p must be in \\(0, 1\\]"),
    (lambda df: df, {"top_p": 1.5}, "top_p must be in \\(0, 1\\]"),
    (lambda df: df, {"y_timestamp": pd.date_range("2030-01-01", periods=2, freq="h")}, "has 2 stamps but 4"),
    (lambda df: df.reset_index(drop=True), {}, "pass x_timestamp"),
]


@pytest.mark.parametrize("change,kwargs,message", BAD_INPUTS)
def test_bad_inputs_give_one_line_errors(mini_pair, change, kwargs, message):
    predictor = _predictor(mini_pair)
    args = {"pred_len": 4, "verbose": False, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        predictor.predict(change(make_candles(40)), **args)
    assert "\n" not in str(info.value)


def test_predict_rejects_non_frames(mini_pair):
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        _predictor(mini_pair).predict([[1, 2, 3, 4]], pred_len=2)


def _published_nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The published package's own top-p filter (`model.kronos.top_k_top_p_filtering`), where
    installed, else its lines copied: sort, cumulate, shift the removal mask, scatter back."""
    from kronos import published

    if published.available():
        return published._module().top_k_top_p_filtering(logits.clone(), top_k=0, top_p=top_p)
    sorted_logits, sorted_index = torch.sort(logits, descending=True)
    remove = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1) > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(1, sorted_index, remove), float("-inf"))


def _assert_published_set(logits: torch.Tensor, top_p: float) -> None:
    from kronos.generation import kept_tokens

    expected = ~torch.isinf(_published_nucleus(logits, top_p))
    got = kept_tokens(logits, top_p=top_p)
    bad = (got != expected).any(-1).nonzero().flatten().tolist()
    assert not bad, f"rows {bad[:5]} keep a different set (top_p {top_p})"


@pytest.mark.parametrize("scale", [0.1, 1.0, 4.0, 30.0])  # near-uniform to one dominant token
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999])
def test_nucleus_filter_keeps_the_published_set(scale, top_p):
    logits = torch.randn(64, 1024, generator=torch.Generator().manual_seed(3)) * scale
    _assert_published_set(logits, top_p)


@pytest.mark.parametrize("top_p", [1 / 1024, 0.25, 0.5, 0.9, 0.5 + 1e-9, 1 - 1 / 1024, 0.9999999])
def test_nucleus_keeps_the_published_set_at_ties_and_exact_boundaries(top_p):
    """Issue 26: the kept set is found without sorting the whole vocabulary, and must still
    be the published one where it is decided by ties (the published sort orders tied tokens)
    or by a cumulative share that lands exactly on top_p."""
    g = torch.Generator().manual_seed(5)
    rows = [torch.zeros(1024),  # uniform: share j/1024 hits 0.25, 0.5 exactly
            torch.randint(0, 4, (1024,), generator=g).float(),  # four tied levels
            torch.randint(0, 40, (1024,), generator=g).float() / 8,  # many ties, peaked
            torch.cat([torch.full((2,), 9.0), torch.zeros(1022)]),  # a tied top pair
            torch.cat([torch.full((1,), 30.0), torch.full((5,), 29.0), torch.randn(1018, generator=g)]),
            torch.log(torch.tensor([0.5, 0.25, 0.25] + [1e-12] * 1021))]  # shares of exactly 0.5, 0.75
    logits = torch.stack(rows)
    _assert_published_set(logits, top_p)
    _assert_published_set(logits * 3.0, top_p)
    _assert_published_set(logits.repeat(8, 1) * 4.0, top_p)  # a batch: the partial selection runs


@pytest.mark.parametrize("scale", [0.25, 2.0, 8.0])
@pytest.mark.parametrize("top_p", [0.3, 0.9])
def test_nucleus_keeps_the_published_set_on_batches_with_many_ties(scale, top_p):
    logits = torch.randint(0, 24, (256, 1024), generator=torch.Generator().manual_seed(11)).float() * scale
    _assert_published_set(logits, top_p)


def test_nucleus_settles_most_rows_from_the_top_candidates(monkeypatch):
    """The partial selection decides peaked rows; flat rows fall back to the whole sort and
    ambiguous ones to the published arithmetic, all with the published result."""
    from kronos import generation

    calls = []
    real = generation.published_nucleus
    monkeypatch.setattr(generation, "published_nucleus", lambda x, p: calls.append(len(x)) or real(x, p))
    peaked = torch.randn(256, 1024, generator=torch.Generator().manual_seed(9)) * 8
    _assert_published_set(peaked, 0.9)
    assert not calls, "no row should need the published fallback"
    _assert_published_set(torch.zeros(4, 1024), 0.5)
    assert calls == [4]


def test_fast_rotation_is_the_plain_rotation_in_the_interleaved_basis():
    """The fast path rotates q and k as complex pairs after reordering their dims: the same
    rotation as the plain module's rotate-half, position by position."""
    from kronos.fast import interleaved_rows, rotation
    from kronos.modules import RotaryEmbedding

    heads, head_dim, start, length = 3, 16, 5, 7
    rotary = RotaryEmbedding(head_dim)
    x = torch.randn(2, length, heads, head_dim, generator=torch.Generator().manual_seed(0))
    plain = RotaryEmbedding.rotate(x, *rotary.cos_sin(torch.arange(start, start + length), torch.float32))
    order = interleaved_rows(heads, head_dim)
    assert sorted(order.tolist()) == list(range(heads * head_dim))
    within = order[:head_dim]  # every head is reordered alike
    pairs = torch.view_as_complex(x[..., within].unflatten(-1, (head_dim // 2, 2)).contiguous())
    fast = torch.view_as_real(pairs * rotation(rotary, start, length)).flatten(-2)
    torch.testing.assert_close(fast, plain[..., within])


@pytest.mark.parametrize("s", [1, 3])
def test_approximate_sliding_is_opt_in_and_exact_until_the_window_slides(mini_pair, s):
    """Issue 26: `sliding='approximate'` keeps the caches once history + steps exceed the
    context (attention over the latest max_context keys, positions re-based); before the
    window slides it is the exact path, token for token."""
    from kronos import generate_tokens

    tokenizer, model = mini_pair
    x, xs, ys, u = _inputs(2, 40, 12, s)
    greedy = Sampling(1.0, 1, 1.0)
    exact = generate_tokens(tokenizer, model, x, xs, ys, 64, 12, greedy, u)[1]
    rolled = generate_tokens(tokenizer, model, x, xs, ys, 64, 12, greedy, u, sliding="approximate")[1]
    assert all(torch.equal(a, b) for a, b in zip(exact, rolled)), "no slide (40 + 12 <= 64): identical"
    exact = generate_tokens(tokenizer, model, x, xs, ys, 44, 12, greedy, u)[1]
    rolled = generate_tokens(tokenizer, model, x, xs, ys, 44, 12, greedy, u, sliding="approximate")[1]
    unbounded = generate_tokens(tokenizer, model, x, xs, ys, 64, 12, greedy, u, sliding="approximate")[1]
    assert all(torch.equal(a[:, :5], b[:, :5]) for a, b in zip(exact, rolled)), "identical until it slides"
    assert not all(torch.equal(a, b) for a, b in zip(rolled, unbounded)), "the window must drop old keys"


def test_sliding_mode_is_checked(mini_pair):
    tokenizer, model = mini_pair
    with pytest.raises(ValueError, match="sliding must be"):
        KronosPredictor(model, tokenizer, cached=False, sliding="approximate")
    with pytest.raises(ValueError, match="sliding must be"):
        KronosPredictor(model, tokenizer, sliding="rolling")
    x, xs, ys, u = _inputs(1, 40, 4, 1)
    from kronos import generate_tokens
    with pytest.raises(ValueError, match="sliding must be"):
        generate_tokens(tokenizer, model, x, xs, ys, 64, 4, Sampling(), u, sliding="rolling")


def test_rotation_table_slices_are_the_direct_rotation():
    from kronos.fast import rotation
    from kronos.modules import RotaryEmbedding
    from kronos.fast import FastKronos

    rotary = RotaryEmbedding(32)
    table = FastKronos.__new__(FastKronos)
    table.rotary, table._rotations = rotary, None
    for position, length in ((0, 1), (5, 60), (63, 2), (300, 1), (0, 700), (511, 1)):
        assert torch.equal(table._rotation(position, length), rotation(rotary, position, length))


@pytest.mark.parametrize("s,split", [(1, 1), (3, 1), (1, 3)])
def test_slid_windows_give_the_same_tokens_whoever_runs_their_history_passes(mini_pair, monkeypatch, s, split):
    """Issue 26: slid windows' history passes run ahead on a helper thread while the steps
    run (`kronos.ahead`). Every pass of a call runs on the same thread count (3 included,
    where kernels split elements differently than at 1), so whether the helper or the step
    ran it changes no logit: with the helper running what it can, and with it doing nothing."""
    import threading

    from kronos import generate_tokens, generation
    from kronos.ahead import WindowsAhead
    from kronos.fast import FastKronos

    tokenizer, model = mini_pair
    x, xs, ys, u = _inputs(2 if s == 1 else 1, 40, 30, s, seed=5)  # slides from step 25 (context 64)
    args = (tokenizer, model, x, xs, ys, 64, 30, Sampling(T=1.0, top_p=0.9), u)
    runners, logits = [], []
    real_prefill, real_logits = generation._prefill, FastKronos.s1_logits
    monkeypatch.setattr(generation, "_prefill", lambda *a: runners.append(threading.current_thread().name) or
                        real_prefill(*a))
    monkeypatch.setattr(FastKronos, "s1_logits", lambda self, h: logits.append(real_logits(self, h)) or logits[-1])
    monkeypatch.setattr(generation, "_helper_threads", lambda rows, device, windows: split)
    ahead = generate_tokens(*args)[1]
    ahead_logits = list(logits)
    assert len(runners) == 1 + 5, "the history once, then each slid window's history part once"
    monkeypatch.setattr(WindowsAhead, "_help", lambda self: None)  # a helper that runs nothing
    runners.clear()
    logits.clear()
    alone = generate_tokens(*args)[1]
    assert set(runners) == {threading.current_thread().name}
    assert all(torch.equal(a, b) for a, b in zip(ahead_logits, logits, strict=True))
    assert torch.equal(ahead[0], alone[0]) and torch.equal(ahead[1], alone[1])


def test_a_history_pass_gives_the_same_bits_on_one_or_two_threads(mini_pair):
    """The helper's passes run on half the call's threads, 1 or 2 (`_helper_threads`): which
    of them the load at a call's start allowed must not change a forecast. Checked here on a
    window of two series and one of 64 rows; at 3 threads torch's elementwise kernels split
    elements differently and round differently, which is why no pass runs on 3."""
    from kronos import generation
    from kronos.fast import FastKronos, fast_path

    _, model = mini_pair
    fast = fast_path(model, FastKronos, torch.float32)
    g = torch.Generator().manual_seed(12)
    threads = torch.get_num_threads()
    try:
        for series, n in ((2, 40), (1, 64)):
            s1, s2 = torch.randint(0, 1024, (series, n), generator=g), torch.randint(0, 1024, (series, n), generator=g)
            stamp = torch.stack([torch.randint(0, k, (series, n), generator=g) for k in (60, 24, 7, 32, 13)], -1)
            made = []
            for count in (1, 2):
                torch.set_num_threads(count)
                with torch.inference_mode():
                    h, caches, dep = generation._prefill(fast, s1, s2, fast.times(stamp.float()), 3, 5)
                made.append((h, caches[-1].prefix_k, dep.prefix_v))
            assert all(torch.equal(a, b) for a, b in zip(*made))
    finally:
        torch.set_num_threads(threads)


def test_slid_windows_are_made_ahead_only_where_cores_and_memory_are_spare():
    """The helper and the steps' own passes take half the cores the call may use each, for
    steps of a few rows (one thread runs those), on the CPU, where windows slide at all; no
    more windows are held ahead than fit in `AHEAD_BYTES`."""
    from kronos import generation
    from kronos.fast import FastKronos, fast_path
    from kronos.model import Kronos
    from kronos.configs import MODEL_CONFIGS
    from kronos.runtime import SERIAL_ROWS

    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert generation._helper_threads(1, cpu, 7) == 1
        assert generation._helper_threads(SERIAL_ROWS, cpu, 7) == 0, "many rows: the steps use every thread"
        assert generation._helper_threads(1, cpu, 0) == 0, "no window slides"
        assert generation._helper_threads(1, torch.device("meta"), 7) == 0
        torch.set_num_threads(8)
        assert generation._helper_threads(1, cpu, 7) == 0, "more threads: slid windows run on all of them"
        torch.set_num_threads(4)
        assert generation._helper_threads(1, cpu, 7) == 2
        torch.set_num_threads(1)
        assert generation._helper_threads(1, cpu, 7) == 0, "no spare core"
    finally:
        torch.set_num_threads(threads)
    base = fast_path(Kronos(**MODEL_CONFIGS["Kronos-base"]).eval(), FastKronos, torch.float32)
    assert generation._ahead_depth(base, 1, 1, 512, 120) == 3, "55 MB a window: three within 256 MB beside the step's"
    assert generation._ahead_depth(base, 1, 15, 512, 500) <= 0, "one window's caches (~700 MB) exceed the budget"


@pytest.mark.parametrize("s", [1, 3])
def test_time_embeddings_cover_only_rows_a_window_reads(mini_pair, monkeypatch, s):
    """Review of issue 26 (memory): the time embeddings were made for every history row and,
    per sample path, for history + forecast ((B*S, n + pred_len, d): +178 MB at 64 series x 8
    paths x 256+24 on Kronos-mini), though windows read only the last max_context history rows
    and the steps only the forecast rows. Only those are embedded, and only the forecast rows
    are repeated per path; the tokens are unchanged."""
    from kronos import generate_tokens
    from kronos.fast import FastKronos

    tokenizer, model = mini_pair
    b, n, h, m = 2, 100, 12, 64  # a history longer than max_context, a window that slides
    x, xs, ys, u = _inputs(b, n, h, s, seed=9)
    args = (tokenizer, model, x, xs, ys, m, h, Sampling(T=1.0, top_p=0.9), u)
    embedded, step_bytes = [], []
    real_times, real_extend = FastKronos.times, FastKronos.extend

    def times(self, stamp):
        embedded.append(stamp.shape[1])
        return real_times(self, stamp)

    def extend(self, *a, times=None, **k):
        step_bytes.append(times.untyped_storage().nbytes())
        return real_extend(self, *a, times=times, **k)

    monkeypatch.setattr(FastKronos, "times", times)
    monkeypatch.setattr(FastKronos, "extend", extend)
    spied = generate_tokens(*args)[1]
    assert embedded == [m + h], "the rows of the first window on, not the whole history"
    if s > 1:  # (one path reruns every slid window: no steps here)
        assert step_bytes and max(step_bytes) <= b * s * h * model.d_model * 4, "the forecast rows only, per path"
    monkeypatch.undo()
    plain = generate_tokens(*args)[1]
    assert torch.equal(spied[0], plain[0]) and torch.equal(spied[1], plain[1])


def test_rotation_table_is_never_shrunk_by_a_concurrent_first_use(monkeypatch):
    """Review of issue 26: the table lives on the cached fast model, shared by threads (a
    web job beside an API forecast). A thread growing it to a short table after another grew
    it to a long one replaced the long one, so that the other thread, re-reading it, got a
    short slice. Each use slices the table it read or made; the shared one only grows."""
    from kronos import fast as fast_module
    from kronos.fast import FastKronos, rotation
    from kronos.modules import RotaryEmbedding

    table = FastKronos.__new__(FastKronos)
    table.rotary, table._rotations = RotaryEmbedding(32), None
    other = []

    def interleaved(rotary, position, length):  # another thread's first use runs meanwhile
        if not other:
            other.append(None)
            other[0] = table._rotation(0, 1024)
        return rotation(rotary, position, length)

    monkeypatch.setattr(fast_module, "rotation", interleaved)
    assert torch.equal(table._rotation(3, 5), rotation(table.rotary, 3, 5))
    assert torch.equal(other[0], rotation(table.rotary, 0, 1024))
    assert table._rotations.shape[0] >= 1024, "the longer table stays"


@pytest.mark.parametrize("series,paths", [(2, 1), (1, 1), (1, 3)])
def test_a_decode_step_does_not_depend_on_the_thread_count(mini_pair, series, paths):
    """Review of issue 26: decode steps of a few rows run on one thread or on several,
    whichever their timed first steps find faster (`StepThreads`), so their result must not
    depend on the count. torch's CPU attention kernel splits a single query's keys among
    threads: two series' step on 1 and on 2 threads differed by 1e-6 and sampled paths could
    part. A step's attention of one query is now two products per row and head."""
    import copy

    from kronos.fast import FastKronos, fast_path

    _, model = mini_pair
    fast = fast_path(model, FastKronos, torch.float32)
    g = torch.Generator().manual_seed(11)
    n = 40
    s1, s2 = torch.randint(0, 1024, (series, n + 1), generator=g), torch.randint(0, 1024, (series, n + 1), generator=g)
    stamp = torch.stack([torch.randint(0, k, (series, n + 1), generator=g) for k in (60, 24, 7, 32, 13)], -1).float()
    threads = torch.get_num_threads()
    outs = []
    try:
        with torch.inference_mode():
            times = fast.times(stamp)
            caches, dep = fast.new_caches(series, n, paths, 4)
            fast.prefill(s1[:, :n], s2[:, :n], None, caches, dep, times=times[:, :n])
            step = (s1[:, n:].repeat_interleave(paths, 0), s2[:, n:].repeat_interleave(paths, 0))
            for count in (1, 2, 3):
                torch.set_num_threads(count)
                c, d = copy.deepcopy(caches), copy.deepcopy(dep)
                h = fast.extend(*step, None, c, d, position=n, times=times[:, n:].repeat_interleave(paths, 0))[:, 0]
                outs.append((fast.s1_logits(h), fast.s2_logits(h, step[0][:, 0], d)))
    finally:
        torch.set_num_threads(threads)
    for other in outs[1:]:
        assert torch.equal(outs[0][0], other[0]) and torch.equal(outs[0][1], other[1])
