"""Autoregressive generation of token paths: the published (uncached) algorithm on the
plain model, and the exact key-value-cached equivalent on the fast path (`kronos.fast`).

Both take normalised inputs and return every sample path in normalised space, shape
(B, S, pred_len, d_in). Sampling draws from per-row uniforms supplied by the caller, so a
series' paths depend only on its own seed, never on what else shares the batch, and the
two implementations can be compared path by path.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .ahead import WindowsAhead
from .fast import FastKronos, FastTokenizerDecoder, KVCache, fast_path
from .model import Kronos
from .runtime import SERIAL_ROWS, StepThreads, fitted_threads, threads_for, using_threads
from .tokenizer import KronosTokenizer


@dataclass(frozen=True)
class Sampling:
    """Temperature, top-k and nucleus settings (top_k > 0 overrides top_p, as published)."""

    T: float = 1.0
    top_k: int = 0
    top_p: float = 0.9


def kept_tokens(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor | None:
    """Mask of the tokens the published filter keeps: the top k, else the smallest nucleus
    above top_p (None when it keeps everything); exactly the published set (`nucleus`)."""
    if top_k > 0:
        return logits >= torch.topk(logits, min(top_k, logits.size(-1)))[0][..., -1:]
    if top_p >= 1.0:
        return None
    return nucleus(logits, top_p)


NUCLEUS_CANDIDATES = 64  # most likely tokens taken per row before sorting the whole vocabulary
NUCLEUS_BATCH_ROWS = 32  # below this many rows a full sort costs less than the candidates' bookkeeping
# Cumulative shares this close to top_p are left to the published arithmetic: its float32
# softmax sums 1024 positive terms, 8 lanes of 128 in sequence, so its shares are off by at
# most ~128 x 6e-8 relative (cumsum accumulates in double).
NUCLEUS_MARGIN = 3e-5


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The published nucleus (top-p) kept set, without sorting the whole vocabulary where
    the distribution is peaked.

    The published filter sorts each row, cumulates the softmax and keeps the tokens up to
    and including the one where the cumulative share passes top_p: every token at or above
    that token's logit, unless it is tied with the next one (the published sort then orders
    the tied tokens). On CPU:

    - in batches (`NUCLEUS_BATCH_ROWS`), rows whose `NUCLEUS_CANDIDATES` most likely tokens
      can hold top_p (the peak's share times their number exceeds it) look for the boundary
      among them (a partial selection); a row is settled there only when the shares on
      either side of the boundary are more than `NUCLEUS_MARGIN` from top_p;
    - the other rows sort their values (numpy, no index) and cumulate the same float32
      softmax as the published code over the same sorted values, so their boundary is the
      published one bit for bit;
    - rows whose boundary token is tied with the next, and every row off the CPU, run the
      published arithmetic itself (`published_nucleus`).
    """
    if logits.device.type != "cpu" or logits.dtype not in (torch.float32, torch.float64):
        return published_nucleus(logits, top_p)
    vocab = logits.shape[-1]
    rows = logits.reshape(-1, vocab)
    flat = rows.numpy()
    peak_t = rows.amax(-1, keepdim=True)
    # over the peak's weight (1 / its share), in float64: torch's vectorised exp and sum, which
    # take a fifth of numpy's time here; a row's kept set never depends on this sum's last bits
    total = (rows - peak_t).exp_().sum(-1, dtype=torch.float64).numpy()
    peak = peak_t.numpy()
    k = min(NUCLEUS_CANDIDATES, vocab)
    rest = np.ones(len(flat), dtype=bool)
    cut = np.empty((len(flat), 1), dtype=flat.dtype)
    tied = np.zeros(len(flat), dtype=bool)
    few = len(flat) < NUCLEUS_BATCH_ROWS or k == vocab
    hopeful = np.flatnonzero(k / total > top_p + NUCLEUS_MARGIN) if not few else []
    if len(hopeful):
        top = _largest_sorted(flat[hopeful], k)
        share = np.cumsum(np.exp(top - peak[hopeful]), -1, dtype=np.float64) / total[hopeful, None]
        last, clear = _boundary(share, top_p)
        clear &= (last[:, 0] < k - 1) & (np.take_along_axis(share, np.maximum(last - 1, 0), -1)[:, 0] * (last[:, 0] > 0)
                  < top_p - NUCLEUS_MARGIN) & (np.take_along_axis(share, last, -1)[:, 0] > top_p + NUCLEUS_MARGIN)
        cut[hopeful], tied[hopeful] = _cut(top, last)
        rest[hopeful[clear]] = False
    rest = np.flatnonzero(rest)
    if len(rest):
        ranked = _largest_sorted(flat[rest], vocab)
        share = torch.softmax(torch.from_numpy(ranked), dim=-1).cumsum(-1).numpy()
        last, _ = _boundary(share, top_p)
        cut[rest], tied[rest] = _cut(ranked, last)
    keep = torch.from_numpy(flat >= cut)
    if tied.any():
        index = torch.from_numpy(np.flatnonzero(tied))
        keep[index] = published_nucleus(logits.reshape(-1, vocab)[index], top_p)
    return keep.reshape(logits.shape)


def _boundary(share: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of cumulative shares: the index (a column) of the first token past top_p,
    and whether there is one."""
    over = share > top_p
    return over.argmax(-1)[:, None], over.any(-1)


def _cut(ranked: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boundary token's logit (a column) and whether the next token ties with it."""
    cut = np.take_along_axis(ranked, last, -1)
    following = np.take_along_axis(ranked, np.minimum(last + 1, ranked.shape[-1] - 1), -1)
    return cut, ((last + 1 < ranked.shape[-1]) & (following == cut))[:, 0]


def published_nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The published top-p filter's kept set, computed its way (sort, softmax, cumulate,
    shift the removal mask by one, scatter back): the reference for ambiguous rows."""
    ranked, order = torch.sort(logits, descending=True)
    remove = torch.cumsum(F.softmax(ranked, dim=-1), dim=-1) > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return ~remove.scatter(-1, order, remove)


SORT_ROWS_PER_THREAD = 64  # fewer rows than this per thread are sorted on the calling thread


def _largest_sorted(flat: np.ndarray, k: int) -> np.ndarray:
    """The k largest values of each row of a 2-d array, largest first: numpy's vectorised
    sort of the values alone (several times faster than torch.sort, which also builds an
    index), after a partial selection (`np.partition`) for k below the width."""
    width = flat.shape[-1]
    out = np.empty((flat.shape[0], k), dtype=flat.dtype)

    def sort_rows(rows: slice) -> None:
        part = flat[rows] if k == width else np.partition(flat[rows], width - k, axis=-1)[:, width - k:]
        out[rows] = np.sort(part, axis=-1)[:, ::-1]

    parts = min(torch.get_num_threads(), len(flat) // SORT_ROWS_PER_THREAD)
    if parts > 1:  # numpy releases the GIL while sorting
        step = -(-len(flat) // parts)
        list(_sort_pool(parts).map(sort_rows, [slice(i, i + step) for i in range(0, len(flat), step)]))
    else:
        sort_rows(slice(None))
    return out


@functools.lru_cache(maxsize=None)
def _sort_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="kronos-sort")


os.register_at_fork(after_in_child=_sort_pool.cache_clear)  # a forked child has none of the pool's threads


def sample_tokens(logits: torch.Tensor, sampling: Sampling, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row by inverting the filtered distribution's CDF at `uniforms`.

    The CDF is cumulated over unnormalised weights and the target scaled by their total,
    which draws from the renormalised kept set without a second softmax.
    """
    scaled = logits.float() / sampling.T
    keep = kept_tokens(scaled, sampling.top_k, sampling.top_p)
    weights = (scaled - scaled.amax(-1, keepdim=True)).exp_()
    if keep is not None:
        weights.masked_fill_(~keep, 0.0)
    cdf = weights.cumsum(-1)
    target = uniforms.to(cdf.dtype)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_max(logits.shape[-1] - 1)


CHUNK_ROWS = 2048  # history rows per pass: batched windows run in groups whose activations stay in cache


def _chunks(series: int, width: int) -> list[slice]:
    size = max(1, CHUNK_ROWS // max(1, width))
    return [slice(i, i + size) for i in range(0, series, size)]


def _encode(tokenizer: KronosTokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain tokenizer's codes (bit-identical to the published code's), a group of
    series at a time."""
    parts = [tokenizer.encode(x[c]) for c in _chunks(x.shape[0], x.shape[1])]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _prefill(fast: FastKronos, s1: torch.Tensor, s2: torch.Tensor, times: torch.Tensor, paths: int,
             capacity: int) -> tuple[torch.Tensor, list[KVCache], KVCache]:
    """`FastKronos.prefill` into caches for the whole batch, a group of series at a time
    (`times`: the stamps' embeddings, `FastKronos.times`)."""
    caches, dep_cache = fast.new_caches(s1.shape[0], s1.shape[1], paths, capacity)
    h_last = torch.cat([fast.prefill(s1[c], s2[c], None, caches, dep_cache, c, times=times[c])
                        for c in _chunks(s1.shape[0], s1.shape[1])])
    return h_last, caches, dep_cache


AHEAD_BYTES = 256 * 2 ** 20  # caches of slid windows made ahead, at most (`WindowsAhead`'s depth)
AHEAD_WINDOWS = 8  # windows made ahead, at most: more than a decode phase's spare cores have time for


def _ahead_depth(fast: FastKronos, series: int, rows: int, max_context: int, pred_len: int) -> int:
    """How many slid windows' history passes may be held ahead (0: none): each window's
    caches of the blocks and the dependency layer (`new_caches`: the history once per series,
    room for the generated tokens per path row) at their largest, within `AHEAD_BYTES`
    beside the window the step holds."""
    window = (2 * len(fast.blocks) + 2) * fast.d_model * fast.emb_s1.element_size() * (
        series * max_context + rows * pred_len)
    return min(AHEAD_WINDOWS, AHEAD_BYTES // max(1, window) - 1)


HELPER_MAX_THREADS = 4  # calls on more threads keep running slid windows on all of them, no helper


def _helper_threads(rows: int, device: torch.device, windows: int) -> int:
    """Threads of each history pass where a helper runs them ahead (0: no helper): where
    windows slide, the steps have a few rows (`SERIAL_ROWS`: one thread runs them, the other
    cores idle) and the call has 2 to `HELPER_MAX_THREADS` threads, half of them, for the
    helper's passes and the step's own alike. A pass on 1 or 2 threads gives the same bits
    (3 does not: torch's elementwise kernels split elements differently), so the tokens do
    not depend on which of those the load at the call's start allowed."""
    threads = torch.get_num_threads()
    if not windows or device.type != "cpu" or rows >= SERIAL_ROWS or not 2 <= threads <= HELPER_MAX_THREADS:
        return 0
    return threads // 2


def _decode_suffix(decoder: FastTokenizerDecoder, prefix: tuple, suffix: tuple, paths: int) -> torch.Tensor:
    """`FastTokenizerDecoder.decode_suffix`, a group of series at a time."""
    width = prefix[0].shape[1] + suffix[0].shape[1]
    return torch.cat([
        decoder.decode_suffix((prefix[0][c], prefix[1][c]),
                              (suffix[0][c.start * paths:c.stop * paths], suffix[1][c.start * paths:c.stop * paths]),
                              paths)
        for c in _chunks(prefix[0].shape[0], width)])


SLIDING = ("exact", "approximate")


def _check(pred_len: int, max_context: int, sliding: str = "exact") -> None:
    if sliding not in SLIDING:
        raise ValueError(f"sliding must be 'exact' or 'approximate', got {sliding!r}")
    if pred_len > max_context:
        raise ValueError(f"pred_len {pred_len} exceeds the model's context of {max_context} tokens")


@torch.inference_mode()
def generate_reference(tokenizer: KronosTokenizer, model: Kronos, x: torch.Tensor, x_stamp: torch.Tensor,
                       y_stamp: torch.Tensor, max_context: int, pred_len: int, sampling: Sampling,
                       uniforms: torch.Tensor) -> torch.Tensor:
    """The published algorithm, unchanged: every step reruns the model on the whole window
    for every sample path, and the tokenizer decodes the whole final window per path.
    Kept as the parity reference for tests and the baseline for benchmarks."""
    _check(pred_len, max_context)
    b, n, _ = x.shape
    s = uniforms.shape[1]
    rows = b * s
    u = uniforms.reshape(rows, pred_len, 2)
    x = x.repeat_interleave(s, 0)
    full_stamp = torch.cat([x_stamp, y_stamp], dim=1).repeat_interleave(s, 0)
    s1_ctx, s2_ctx = tokenizer.encode(x)
    gen_s1 = s1_ctx.new_empty(rows, pred_len)
    gen_s2 = s2_ctx.new_empty(rows, pred_len)
    for i in range(pred_len):
        end = n + i
        start = max(0, end - max_context)
        win_s1 = torch.cat([s1_ctx, gen_s1[:, :i]], dim=1)[:, start:end]
        win_s2 = torch.cat([s2_ctx, gen_s2[:, :i]], dim=1)[:, start:end]
        s1_logits, context = model.decode_s1(win_s1, win_s2, full_stamp[:, start:end].contiguous())
        s1 = sample_tokens(s1_logits[:, -1, :], sampling, u[:, i, 0])
        s2_logits = model.decode_s2(context, s1[:, None])
        gen_s1[:, i], gen_s2[:, i] = s1, sample_tokens(s2_logits[:, -1, :], sampling, u[:, i, 1])
    start = max(0, n + pred_len - max_context)
    window = [torch.cat([s1_ctx, gen_s1], 1)[:, start:], torch.cat([s2_ctx, gen_s2], 1)[:, start:]]
    z = tokenizer.decode(window)[:, -pred_len:]
    return z.reshape(b, s, pred_len, -1)


@torch.inference_mode()
def generate_cached(tokenizer: KronosTokenizer, model: Kronos, x: torch.Tensor, x_stamp: torch.Tensor,
                    y_stamp: torch.Tensor, max_context: int, pred_len: int, sampling: Sampling,
                    uniforms: torch.Tensor, dtype: torch.dtype = torch.float32, sliding: str = "exact") -> torch.Tensor:
    """Same result as `generate_reference`, computing each thing once (`generate_tokens`),
    then decoding only the generated rows against the tokenizer's cached history."""
    s = uniforms.shape[1]
    with fitted_threads():
        (s1_ctx, s2_ctx), (gen_s1, gen_s2) = generate_tokens(tokenizer, model, x, x_stamp, y_stamp, max_context,
                                                             pred_len, sampling, uniforms, dtype, sliding)
        ds = max(0, x.shape[1] + pred_len - max_context)
        decoder = fast_path(tokenizer, FastTokenizerDecoder, dtype)
        z = _decode_suffix(decoder, (s1_ctx[:, ds:], s2_ctx[:, ds:]), (gen_s1, gen_s2), s)
    return z.reshape(x.shape[0], s, pred_len, -1)


@torch.inference_mode()
def generate_tokens(tokenizer: KronosTokenizer, model: Kronos, x: torch.Tensor, x_stamp: torch.Tensor,
                    y_stamp: torch.Tensor, max_context: int, pred_len: int, sampling: Sampling,
                    uniforms: torch.Tensor, dtype: torch.dtype = torch.float32,
                    sliding: str = "exact") -> tuple[tuple, tuple]:
    """The context's (s1, s2) tokens (B, n) and the generated ones (B*S, pred_len), cached.

    The history is tokenized (on the plain tokenizer: the codes are bit-identical to the
    published ones) and run through the model once per series; its keys/values are shared
    by all sample paths, and each step feeds only the new token. Once the window must slide
    (history + generated > max_context) the positions of every token change, so the shifted
    window is rerun, as the published code does: its history part once per series, made
    ahead on a spare core while the steps run (`WindowsAhead`), then the generated tokens
    per path against it. The per-series passes run a group of
    series at a time so that their activations stay in cache; the steps run on all rows.
    `dtype=torch.bfloat16` runs the fast path in reduced precision (`kronos.precision`).

    `sliding="approximate"` (opt-in) does not rerun a slid window: the caches keep their
    keys and values, attention sees only the latest `max_context` of them, and positions
    keep counting (rotary attention depends only on distances, so this is the window
    re-based). It is approximate because the kept states were computed while the dropped
    tokens were still in the window; `benchmarks/bench_sliding.py` measures what it costs.
    """
    _check(pred_len, max_context, sliding)
    b, n, _ = x.shape
    s = uniforms.shape[1]
    rows = b * s
    u = uniforms.reshape(rows, pred_len, 2)
    fast = fast_path(model, FastKronos, dtype)
    s1_ctx, s2_ctx = _encode(tokenizer, x)
    # the time embeddings, once, not per step, of the rows any window can read: from the
    # first window's start on (B, n - start + pred_len, d); `times[:, t]` is row start + t
    start = max(0, n - max_context)
    times = fast.times(torch.cat([x_stamp[:, start:], y_stamp], dim=1))
    h_last, caches, dep_cache = _prefill(fast, s1_ctx[:, start:], s2_ctx[:, start:], times[:, :n - start], s, pred_len)
    rolling = sliding == "approximate"
    if rolling:
        for cache in (*caches, dep_cache):
            cache.window = max_context
    h_rows = h_last.repeat_interleave(s, 0)
    s1_logits = fast.s1_logits(h_last).repeat_interleave(s, 0)
    gen_s1 = s1_ctx.new_empty(rows, pred_len)
    gen_s2 = s2_ctx.new_empty(rows, pred_len)
    # the steps read only the forecast rows' embeddings: those alone are repeated per path
    # (B*S, pred_len, d); `row_times[:, i]` is forecast row i
    row_times = times[:, n - start:] if s == 1 else times[:, n - start:].repeat_interleave(s, 0)
    step_threads = StepThreads(rows)
    slid = range(0) if rolling else range(max(1, max_context - n + 1), pred_len)

    def history_pass(i: int) -> tuple[list[KVCache], KVCache]:
        """Step i's slid window's history part (its context tokens, run once per series) in
        caches with room for the i generated tokens that follow it."""
        ws = n + i - max_context
        return _prefill(fast, s1_ctx[:, ws:], s2_ctx[:, ws:], times[:, ws - start:n - start], s, i)[1:]

    threads = torch.get_num_threads()
    split = _helper_threads(rows, x.device, len(slid))
    depth = _ahead_depth(fast, s1_ctx.shape[0], rows, max_context, pred_len) if split else 0
    ahead = WindowsAhead(history_pass, slid, depth, split if depth > 0 else None)
    try:
        for i in range(pred_len):
            end = n + i
            if i in slid:
                # the window slid: every position changed, so it is run anew, as the published
                # code does: its history part (made ahead where cores are spare, `WindowsAhead`),
                # then the generated tokens per path against it. Threads: the passes' own count
                # where a helper runs (the same for every pass of the call: the tokens do not
                # depend on who ran what), else fitted again to the cores free now.
                with fitted_threads() if ahead.threads is None else using_threads(ahead.threads):
                    step_caches, dep_cache = ahead.take(i)
                    h_rows = fast.extend(gen_s1[:, :i], gen_s2[:, :i], None, step_caches, dep_cache,
                                         max_context - i, times=row_times[:, :i])[:, -1]
                    s1_logits = fast.s1_logits(h_rows)
                with threads_for(rows):
                    _sample_step(fast, s1_logits, h_rows, dep_cache, sampling, u[:, i], gen_s1, gen_s2, i)
            elif i > 0:
                with using_threads(max(1, threads - split)) if ahead.helping else step_threads.step():
                    h_rows = fast.extend(gen_s1[:, i - 1:i], gen_s2[:, i - 1:i], None, caches, dep_cache,
                                         position=end - 1 - start, times=row_times[:, i - 1:i])[:, 0]
                    s1_logits = fast.s1_logits(h_rows)
                    _sample_step(fast, s1_logits, h_rows, dep_cache, sampling, u[:, i], gen_s1, gen_s2, i)
            else:
                with threads_for(rows):
                    _sample_step(fast, s1_logits, h_rows, dep_cache, sampling, u[:, i], gen_s1, gen_s2, i)
    finally:
        ahead.close()
    return (s1_ctx, s2_ctx), (gen_s1, gen_s2)


def _sample_step(fast: FastKronos, s1_logits: torch.Tensor, h_rows: torch.Tensor, dep_cache: KVCache,
                 sampling: Sampling, u: torch.Tensor, gen_s1: torch.Tensor, gen_s2: torch.Tensor, i: int) -> None:
    """Step i's s1 from its logits, then s2 through the dependency layer, into gen_s1/gen_s2."""
    s1 = sample_tokens(s1_logits, sampling, u[:, 0])
    s2_logits = fast.s2_logits(h_rows, s1, dep_cache)
    gen_s1[:, i], gen_s2[:, i] = s1, sample_tokens(s2_logits, sampling, u[:, 1])
