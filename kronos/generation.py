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

from .fast import FastKronos, FastTokenizerDecoder, KVCache, fast_path
from .model import Kronos
from .runtime import fitted_threads, threads_for
from .tokenizer import KronosTokenizer


@dataclass(frozen=True)
class Sampling:
    """Temperature, top-k and nucleus settings (top_k > 0 overrides top_p, as published)."""

    T: float = 1.0
    top_k: int = 0
    top_p: float = 0.9


def kept_tokens(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor | None:
    """Mask of the tokens the published filter keeps: the top k, else the smallest nucleus
    above top_p (None when it keeps everything).

    The nucleus is the run of most likely tokens up to and including the one where the
    cumulative probability passes top_p, so it is every token at or above that token's
    logit: only the sorted values are needed, not a sorted index.
    """
    if top_k > 0:
        return logits >= torch.topk(logits, min(top_k, logits.size(-1)))[0][..., -1:]
    if top_p >= 1.0:
        return None
    ranked = _sorted_descending(logits)
    cumulative = F.softmax(ranked, dim=-1).cumsum(-1)
    last = (cumulative <= top_p).sum(-1, keepdim=True).clamp_max(ranked.shape[-1] - 1)
    return logits >= ranked.gather(-1, last)


SORT_ROWS_PER_THREAD = 64  # fewer rows than this per thread are sorted on the calling thread


def _sorted_descending(values: torch.Tensor) -> torch.Tensor:
    """Each row's values, largest first. On CPU numpy's vectorised sort of the values alone
    is several times faster than torch.sort, which also builds an index."""
    if values.device.type != "cpu" or values.dtype not in (torch.float32, torch.float64):
        return values.sort(dim=-1, descending=True).values
    flat = values.reshape(-1, values.shape[-1]).numpy()
    out = np.empty_like(flat)

    def sort_rows(rows: slice) -> None:
        out[rows] = np.sort(flat[rows], axis=-1)[:, ::-1]

    parts = min(torch.get_num_threads(), len(flat) // SORT_ROWS_PER_THREAD)
    if parts > 1:  # numpy releases the GIL while sorting
        step = -(-len(flat) // parts)
        list(_sort_pool(parts).map(sort_rows, [slice(i, i + step) for i in range(0, len(flat), step)]))
    else:
        sort_rows(slice(None))
    return torch.from_numpy(out).reshape(values.shape)


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


def _prefill(fast: FastKronos, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor, paths: int,
             capacity: int) -> tuple[torch.Tensor, list[KVCache], KVCache]:
    """`FastKronos.prefill` into caches for the whole batch, a group of series at a time."""
    caches, dep_cache = fast.new_caches(s1.shape[0], s1.shape[1], paths, capacity)
    h_last = torch.cat([fast.prefill(s1[c], s2[c], stamp[c], caches, dep_cache, c)
                        for c in _chunks(s1.shape[0], s1.shape[1])])
    return h_last, caches, dep_cache


def _decode_suffix(decoder: FastTokenizerDecoder, prefix: tuple, suffix: tuple, paths: int) -> torch.Tensor:
    """`FastTokenizerDecoder.decode_suffix`, a group of series at a time."""
    width = prefix[0].shape[1] + suffix[0].shape[1]
    return torch.cat([
        decoder.decode_suffix((prefix[0][c], prefix[1][c]),
                              (suffix[0][c.start * paths:c.stop * paths], suffix[1][c.start * paths:c.stop * paths]),
                              paths)
        for c in _chunks(prefix[0].shape[0], width)])


def _check(pred_len: int, max_context: int) -> None:
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
                    uniforms: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Same result as `generate_reference`, computing each thing once (`generate_tokens`),
    then decoding only the generated rows against the tokenizer's cached history."""
    s = uniforms.shape[1]
    with fitted_threads():
        (s1_ctx, s2_ctx), (gen_s1, gen_s2) = generate_tokens(tokenizer, model, x, x_stamp, y_stamp, max_context,
                                                             pred_len, sampling, uniforms, dtype)
        ds = max(0, x.shape[1] + pred_len - max_context)
        decoder = fast_path(tokenizer, FastTokenizerDecoder, dtype)
        z = _decode_suffix(decoder, (s1_ctx[:, ds:], s2_ctx[:, ds:]), (gen_s1, gen_s2), s)
    return z.reshape(x.shape[0], s, pred_len, -1)


@torch.inference_mode()
def generate_tokens(tokenizer: KronosTokenizer, model: Kronos, x: torch.Tensor, x_stamp: torch.Tensor,
                    y_stamp: torch.Tensor, max_context: int, pred_len: int, sampling: Sampling,
                    uniforms: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[tuple, tuple]:
    """The context's (s1, s2) tokens (B, n) and the generated ones (B*S, pred_len), cached.

    The history is tokenized (on the plain tokenizer: the codes are bit-identical to the
    published ones) and run through the model once per series; its keys/values are shared
    by all sample paths, and each step feeds only the new token. Once the window must slide
    (history + generated > max_context) the positions of every token change, so the shifted
    window is rerun, as the published code does. The per-series passes run a group of
    series at a time so that their activations stay in cache; the steps run on all rows.
    `dtype=torch.bfloat16` runs the fast path in reduced precision (`kronos.precision`).
    """
    _check(pred_len, max_context)
    b, n, _ = x.shape
    s = uniforms.shape[1]
    rows = b * s
    u = uniforms.reshape(rows, pred_len, 2)
    fast = fast_path(model, FastKronos, dtype)
    s1_ctx, s2_ctx = _encode(tokenizer, x)
    stamps = torch.cat([x_stamp, y_stamp], dim=1)
    start = max(0, n - max_context)
    h_last, caches, dep_cache = _prefill(fast, s1_ctx[:, start:], s2_ctx[:, start:], stamps[:, start:n], s, pred_len)
    h_rows = h_last.repeat_interleave(s, 0)
    s1_logits = fast.s1_logits(h_last).repeat_interleave(s, 0)
    gen_s1 = s1_ctx.new_empty(rows, pred_len)
    gen_s2 = s2_ctx.new_empty(rows, pred_len)
    row_stamps = stamps.repeat_interleave(s, 0)
    for i in range(pred_len):
        end = n + i
        if i > 0 and end > max_context:
            # the window slid: every position changed, so recompute it. With several paths
            # its history part is the same for all of them (run once per series) and only
            # the generated tokens run per path, against that shared prefix; one path runs
            # the window in one pass.
            ws = end - max_context
            if s == 1:
                h_rows, _, dep_cache = _prefill(fast, torch.cat((s1_ctx[:, ws:], gen_s1[:, :i]), 1),
                                                torch.cat((s2_ctx[:, ws:], gen_s2[:, :i]), 1), stamps[:, ws:end], 1, 0)
            else:
                _, step_caches, dep_cache = _prefill(fast, s1_ctx[:, ws:], s2_ctx[:, ws:], stamps[:, ws:n], s, i)
                h_rows = fast.extend(gen_s1[:, :i], gen_s2[:, :i], row_stamps[:, n:end], step_caches, dep_cache,
                                     n - ws)[:, -1]
            s1_logits = fast.s1_logits(h_rows)
        elif i > 0:
            with threads_for(rows):
                h_rows = fast.extend(gen_s1[:, i - 1:i], gen_s2[:, i - 1:i], row_stamps[:, end - 1:end], caches,
                                     dep_cache, position=end - 1 - start)[:, 0]
                s1_logits = fast.s1_logits(h_rows)
        with threads_for(rows):
            s1 = sample_tokens(s1_logits, sampling, u[:, i, 0])
            s2_logits = fast.s2_logits(h_rows, s1, dep_cache)
            gen_s1[:, i], gen_s2[:, i] = s1, sample_tokens(s2_logits, sampling, u[:, i, 1])
    return (s1_ctx, s2_ctx), (gen_s1, gen_s2)
