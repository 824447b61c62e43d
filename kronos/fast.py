"""The fast inference path: packed products, key-value caches, one decode step per token.

The plain modules (`modules`, `model`, `tokenizer`) compute what the published code
computes, on torch's default kernels. Generation runs the same arithmetic faster here:

- q/k/v and the two SwiGLU input products are fused into single packed products (`linear`);
- a series' history runs once and its keys/values are shared by all its sample paths
  (`KVCache`, `attend_with_cache`); each step then feeds one token per path;
- the tokenizer decodes only the generated rows, against its cached history.

The block's wiring (`pre_norm_block`), SwiGLU, the rotary tables and rotation, and the
weights are the plain modules' own, so each mechanism exists once; what differs here is
only how products, norms and attention are run. Results agree with the plain path to
float rounding, which is why tokenizer *encoding* stays on the plain path: a code bit whose
value lies within rounding of zero would otherwise flip, and context tokens would differ
from the published code's. `precision="bf16"` runs the products in bfloat16 on float32
activations: caches, norms, attention and sampling stay float32 (see `precision`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .linear import PackedLinear
from .model import Kronos
from .modules import RMSNorm, RotaryEmbedding, TransformerBlock, pre_norm_block, swiglu
from .tokenizer import KronosTokenizer


@dataclass
class KVCache:
    """Keys/values of one attention layer during cached generation.

    `prefix_k/v` hold the shared history, one row per series (B, H, P, D); `suffix_k/v`
    hold each row's own tokens (B*S, H, capacity, D), filled up to `length`. With one path
    per series the history goes into the rows' buffers instead (P == 0), so attention is a
    single fused call. The buffers are allocated once for the whole batch and the history
    is written in place, a group of series at a time (`write_history`).
    """

    prefix_k: torch.Tensor
    prefix_v: torch.Tensor
    suffix_k: torch.Tensor
    suffix_v: torch.Tensor
    paths: int
    length: int = 0
    window: int | None = None  # attend to at most this many latest keys (the approximate rolling window)

    @classmethod
    def empty(cls, series: int, heads: int, history: int, head_dim: int, paths: int, capacity: int,
              like: torch.Tensor) -> KVCache:
        """Room for `history` shared tokens per series and `capacity` own tokens per path row."""
        def new(*shape: int) -> torch.Tensor:
            return like.new_empty(shape)

        if paths == 1:
            return cls(new(series, heads, 0, head_dim), new(series, heads, 0, head_dim),
                       new(series, heads, history + capacity, head_dim), new(series, heads, history + capacity, head_dim),
                       paths, length=history)
        return cls(new(series, heads, history, head_dim), new(series, heads, history, head_dim),
                   new(series * paths, heads, capacity, head_dim), new(series * paths, heads, capacity, head_dim), paths)

    def write_history(self, rows: slice, k: torch.Tensor, v: torch.Tensor) -> None:
        """The history's keys/values (series, H, P, D) of the series `rows`."""
        if self.paths == 1:
            self.suffix_k[rows, :, :k.shape[2]], self.suffix_v[rows, :, :k.shape[2]] = k, v
        else:
            self.prefix_k[rows], self.prefix_v[rows] = k, v

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        t = k.shape[2]
        self.suffix_k[:, :, self.length:self.length + t] = k
        self.suffix_v[:, :, self.length:self.length + t] = v
        self.length += t

    def keys(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prefix's and the rows' keys/values attended to: all of them, or within
        `window` the latest (the rows' own first, then the end of the shared prefix)."""
        sk, sv = self.suffix_k[:, :, :self.length], self.suffix_v[:, :, :self.length]
        pk, pv = self.prefix_k, self.prefix_v
        if self.window is not None:
            own = min(self.length, self.window)
            sk, sv = sk[:, :, self.length - own:], sv[:, :, self.length - own:]
            shared = min(pk.shape[2], self.window - own)
            pk, pv = pk[:, :, pk.shape[2] - shared:], pv[:, :, pv.shape[2] - shared:]
        return pk, pv, sk, sv


# Fewer queries per row and head than this attend through two products (`_few_queries`): the
# fused CPU kernel's result for a few queries depends on the thread count (seen for 1, 2 and 3
# queries at 1-4 threads, head sizes 52 and 64; 4 to 100 queries agreed bit for bit).
FLASH_MIN_QUERIES = 8

# CPU's fused attention kernel, which also returns the log-sum-exp needed to merge two parts
try:
    _FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
except (AttributeError, RuntimeError):  # older torch: the plain matmul path below is used
    _FLASH_CPU = None


def _own_mask(q: torch.Tensor, own_keys: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """Which of a row's own keys each of its T queries sees (None: all of them): causally,
    the queries being the last T of those keys."""
    t, length = q.shape[2], own_keys.shape[2]
    if not causal or t == 1:
        return None
    return torch.ones(t, length, dtype=torch.bool, device=q.device).tril(length - t)


def attend_with_cache(q: torch.Tensor, cache: KVCache, causal_suffix: bool) -> torch.Tensor:
    """Attention of `q` (B*S, H, T, D) over the shared prefix plus each row's suffix.

    The prefix is multiplied once per series for all its S paths (the paths become extra
    query rows), so it is neither copied nor recomputed per path. The last T suffix entries
    are the queries' own tokens; with `causal_suffix` each query sees only those before it.
    """
    rows, heads, t, d = q.shape
    pk, pv, sk, sv = cache.keys()
    if pk.shape[2] == 0:
        mask = _own_mask(q, sk, causal_suffix)
        return _few_queries(q, sk, sv, mask) if t < FLASH_MIN_QUERIES else \
            F.scaled_dot_product_attention(q, sk, sv, attn_mask=mask)
    b, s = pk.shape[0], cache.paths
    qp = q.reshape(b, s, heads, t, d).transpose(1, 2).reshape(b, heads, s * t, d)  # paths as query rows
    if _FLASH_CPU is not None and q.device.type == "cpu" and s * t >= FLASH_MIN_QUERIES and \
            (t == 1 or t >= FLASH_MIN_QUERIES) and (t == 1 or not causal_suffix or sk.shape[2] == t):
        # the prefix and the rows' own keys apart, merged exactly through their log-sum-exps:
        # the prefix by the fused kernel (paths as query rows), the own keys by it too, or for
        # a decode step by two small products (a kernel call would spend most of its time
        # setting up thousands of one-query problems)
        out_p, lse_p = _FLASH_CPU(qp, pk, pv)
        out_p = out_p.reshape(b, heads, s, t, d).transpose(1, 2).reshape(rows, heads, t, d)
        if sk.shape[2] == 0:
            return out_p
        lse_p = lse_p.reshape(b, heads, s, t).transpose(1, 2).reshape(rows, heads, t)
        if t == 1:
            scores = torch.matmul(q, sk.transpose(-1, -2)).mul_(1.0 / math.sqrt(d))  # on the cache's views
            lse_s = torch.logsumexp(scores, -1)
            out_s = torch.matmul(scores.sub_(lse_s[..., None]).exp_(), sv)
        else:
            out_s, lse_s = _FLASH_CPU(q, sk, sv, is_causal=causal_suffix)
        top = torch.maximum(lse_p, lse_s)
        w_p, w_s = (lse_p - top).exp_(), (lse_s - top).exp_()
        total = w_p + w_s
        return out_p * (w_p / total)[..., None] + out_s * (w_s / total)[..., None]
    scale = 1.0 / math.sqrt(d)
    scores_p = torch.matmul(qp, pk.transpose(-1, -2)).reshape(b, heads, s, t, -1).transpose(1, 2)
    scores_s = torch.matmul(q, sk.transpose(-1, -2))  # (B*S, H, T, L)
    mask = _own_mask(q, sk, causal_suffix)
    if mask is not None:
        scores_s = scores_s.masked_fill(~mask, float("-inf"))
    n_p = scores_p.shape[-1]
    probs = torch.softmax(torch.cat((scores_p.reshape(rows, heads, t, n_p), scores_s), dim=-1) * scale, dim=-1)
    probs_p = probs[..., :n_p].reshape(b, s, heads, t, n_p).transpose(1, 2).reshape(b, heads, s * t, n_p)
    out_p = torch.matmul(probs_p, pv).reshape(b, heads, s, t, d).transpose(1, 2).reshape(rows, heads, t, d)
    return out_p + torch.matmul(probs[..., n_p:], sv)


def rotation(rotary: RotaryEmbedding, position: int, length: int) -> torch.Tensor:
    """The rotary rotation of positions position..position+length-1 as unit complex numbers
    (T, 1, D/2), for q and k in the interleaved basis (`interleaved_rows`): there each pair
    (i, i + D/2) of `RotaryEmbedding.rotate` is adjacent, and rotating it is one complex
    product instead of three passes over strided halves. The angles are the plain module's
    own (the same inverse frequencies); shared by all blocks of a stack (equal head sizes)."""
    positions = torch.arange(position, position + length, device=rotary.inv_freq.device)
    angles = positions.to(rotary.inv_freq.dtype)[:, None] * rotary.inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles)[:, None]


def interleaved_rows(heads: int, head_dim: int) -> torch.Tensor:
    """Output order of a q or k projection in the interleaved basis: each head's dims
    0, D/2, 1, D/2 + 1, ... Dot products of q and k are unchanged when both are reordered
    alike, so only their projections' rows move; keys are cached in this order."""
    half = head_dim // 2
    within = torch.stack((torch.arange(half), torch.arange(half) + half), dim=1).reshape(-1)
    return (torch.arange(heads)[:, None] * head_dim + within).reshape(-1)


class FastBlock:
    """`TransformerBlock` over a key-value cache, with fused packed products."""

    def __init__(self, block: TransformerBlock, dtype: torch.dtype):
        attn = block.self_attn
        self.heads, self.head_dim = attn.n_heads, attn.head_dim
        order = interleaved_rows(self.heads, self.head_dim)
        self.qkv = PackedLinear.of(attn.q_proj, attn.k_proj, attn.v_proj, dtype=dtype, rows=(order, order, None))
        self.out = PackedLinear.of(attn.out_proj, dtype=dtype)
        self.w13 = PackedLinear.of(block.ffn.w1, block.ffn.w3, dtype=dtype)
        self.w2 = PackedLinear.of(block.ffn.w2, dtype=dtype)
        self.ff_dim = block.ffn.w1.out_features
        self.norm1, self.norm2 = _norm(block.norm1), _norm(block.norm2)
        self.activations = block.norm1.weight  # caches and activations keep the model's own dtype

    def _project(self, h: torch.Tensor, rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated q and k and v of the normed input h (rows, T, d), each (rows, H, T, D)."""
        rows, t, d = h.shape
        qkv = self.qkv(h)
        pairs = qkv[..., :2 * d].view(rows, t, 2 * self.heads, self.head_dim // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(pairs) * rot).view(rows, t, 2 * self.heads, -1)
        qk = qk.transpose(1, 2)
        v = qkv[..., 2 * d:].view(rows, t, self.heads, self.head_dim).transpose(1, 2)
        return qk[:, :self.heads], qk[:, self.heads:], v

    def _attention(self, h: torch.Tensor, rot: torch.Tensor, attend: Attend) -> torch.Tensor:
        """The attention sublayer on h: packed projections, `attend(q, k, v)`, output product."""
        rows, t, d = h.shape
        return self.out(attend(*self._project(h, rot)).transpose(1, 2).reshape(rows, t, d))

    def _feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        g = self.w13(h)  # w1 and w3 in one product
        return self.w2(swiglu(g[..., :self.ff_dim], g[..., self.ff_dim:]))

    def _run(self, x: torch.Tensor, rot: torch.Tensor, attend: Attend) -> torch.Tensor:
        return pre_norm_block(x, self.norm1, lambda h: self._attention(h, rot, attend), self.norm2,
                              self._feed_forward)

    def new_cache(self, series: int, history: int, paths: int, capacity: int) -> KVCache:
        return KVCache.empty(series, self.heads, history, self.head_dim, paths, capacity, self.activations)

    def __call__(self, x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
        """The block on whole sequences (causal, nothing cached)."""
        return self._run(x, rot, _causal)

    def prefill(self, x: torch.Tensor, rot: torch.Tensor, cache: KVCache, rows: slice = slice(None),
                keys_only: bool = False) -> torch.Tensor | None:
        """Run a shared prefix (one row per series, the series `rows` of `cache`) and write
        its keys/values into the cache. `keys_only` skips the output (None): a last
        layer's history rows serve only as keys and values."""
        if keys_only:
            _, k, v = self._project(self.norm1(x), rot)
            cache.write_history(rows, k, v)
            return None

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache.write_history(rows, k, v)
            return _causal(q, k, v)
        return self._run(x, rot, attend)

    def extend(self, x: torch.Tensor, rot: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed T new tokens per row (rows, T, d) after the cached ones."""
        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache.append(k, v)
            return attend_with_cache(q, cache, causal_suffix=x.shape[1] > 1)
        return self._run(x, rot, attend)


Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if q.shape[2] < FLASH_MIN_QUERIES:
        return _few_queries(q, k, v, _own_mask(q, k, causal=True))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _few_queries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of a few queries per row and head over k (`mask`: which keys each sees):
    two products. For a few queries torch's CPU kernel splits the keys among threads, so
    its result would depend on the thread count (which decode steps choose by timing);
    here each row and head is one product whatever the count (`FLASH_MIN_QUERIES`)."""
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, -1), v)


def _norm(norm: RMSNorm) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's RMSNorm as torch's fused kernel (float32 accumulation, to rounding the
    same as `RMSNorm.forward`)."""
    weight, eps = norm.weight.detach(), norm.eps
    return lambda x: F.rms_norm(x, (x.shape[-1],), weight, eps)


class FastKronos:
    """Cached prefill, extension and one-token steps of a `Kronos` model."""

    def __init__(self, model: Kronos, dtype: torch.dtype = torch.float32):
        self.model, self.d_model = model, model.d_model
        self.blocks = [FastBlock(b, dtype) for b in model.transformer]
        self.rotary = model.transformer[0].self_attn.rotary
        self._rotations: torch.Tensor | None = None  # `_rotation`'s table
        emb = model.embedding
        self.emb_s1, self.emb_s2 = emb.emb_s1.weight.detach(), emb.emb_s2.weight.detach()
        self.fusion = PackedLinear.of(emb.fusion_proj, dtype=dtype)
        self.time_emb = model.time_emb
        self.norm = _norm(model.norm)
        self.proj_s1 = PackedLinear.of(model.head.proj_s1, dtype=dtype)
        self.proj_s2 = PackedLinear.of(model.head.proj_s2, dtype=dtype)
        dep = model.dep_layer.cross_attn
        self.dep_heads = dep.n_heads
        self.dep_q, self.dep_kv = PackedLinear.of(dep.q_proj, dtype=dtype), PackedLinear.of(dep.k_proj, dep.v_proj,
                                                                                             dtype=dtype)
        self.dep_out, self.dep_norm = PackedLinear.of(dep.out_proj, dtype=dtype), _norm(model.dep_layer.norm)

    def times(self, stamp: torch.Tensor) -> torch.Tensor:
        """The time embeddings of `stamp` (..., 5) -> (..., d): each row depends on its own
        stamp only, so generation computes them once for history + forecast and hands
        slices to `prefill`/`extend` (`times=`) instead of per step."""
        return self.time_emb(stamp)

    def _embed(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor | None,
               times: torch.Tensor | None = None) -> torch.Tensor:
        scale = math.sqrt(self.d_model)
        x = self.fusion(torch.cat((self.emb_s1[s1] * scale, self.emb_s2[s2] * scale), -1))
        return x + (self.time_emb(stamp) if times is None else times)

    def _rotation(self, position: int, length: int) -> torch.Tensor:
        """`rotation(self.rotary, position, length)`, sliced from a table of positions from 0
        that grows as needed: each entry is computed from its own position alone, so the
        slice is bit for bit the direct computation, without its five ops per step.
        The table is shared by the threads using this (cached) model: each slices the table
        it read or made, and a table replaces the shared one only where it is longer."""
        end = position + length
        table = self._rotations
        if table is None or table.shape[0] < end:
            table = rotation(self.rotary, 0, max(end, 2 * (0 if table is None else table.shape[0]), 64))
            shared = self._rotations  # another thread may have grown it meanwhile
            if shared is None or shared.shape[0] < table.shape[0]:
                self._rotations = table
        return table[position:end]

    def _dep_heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, t, d = h.shape
        kv = self.dep_kv(h).reshape(rows, t, 2, self.dep_heads, d // self.dep_heads)
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    def new_caches(self, series: int, history: int, paths: int, capacity: int) -> tuple[list[KVCache], KVCache]:
        """Empty caches of every block and of the dependency layer, for `series` histories of
        `history` tokens shared by `paths` rows each, with room for `capacity` more."""
        return [b.new_cache(series, history, paths, capacity) for b in self.blocks], \
            self.new_dep_cache(series, history, paths, capacity)

    def new_dep_cache(self, series: int, history: int, paths: int, capacity: int) -> KVCache:
        """An empty cache of the dependency layer (as `new_caches`)."""
        return KVCache.empty(series, self.dep_heads, history, self.d_model // self.dep_heads, paths, capacity,
                             self.emb_s1)

    def prefill(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor | None, caches: list[KVCache],
                dep_cache: KVCache, rows: slice = slice(None), times: torch.Tensor | None = None) -> torch.Tensor:
        """Run histories once per series (the series `rows` of the caches, from
        `new_caches`) and write their keys/values. Returns the last position's hidden
        state (series, d). `times`: the stamps' embeddings (`times`), if already made."""
        x = self._embed(s1, s2, stamp, times)
        rot = self._rotation(0, x.shape[1])
        for block, cache in zip(self.blocks, caches):
            x = block.prefill(x, rot, cache, rows)
        h = self.norm(x)
        dep_cache.write_history(rows, *self._dep_heads(h))
        return h[:, -1]

    def extend(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor | None, caches: list[KVCache],
               dep_cache: KVCache, position: int, times: torch.Tensor | None = None) -> torch.Tensor:
        """Feed T tokens per row (B*S, T) at `position` onwards; their final-norm hidden
        states (B*S, T, d). One token per row is a decode step."""
        x = self._embed(s1, s2, stamp, times)
        rot = self._rotation(position, x.shape[1])
        for block, cache in zip(self.blocks, caches):
            x = block.extend(x, rot, cache)
        h = self.norm(x)
        dep_cache.append(*self._dep_heads(h))
        return h

    def s1_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj_s1(h)

    def s2_logits(self, h: torch.Tensor, s1: torch.Tensor, dep_cache: KVCache) -> torch.Tensor:
        """s2 logits from the last hidden states (rows, d), the sampled s1 and the window's
        cache: the published dependency layer, whose keys are not rotated at inference."""
        rows = h.shape[0]
        q = self.dep_q(self.emb_s1[s1]).reshape(rows, self.dep_heads, 1, self.d_model // self.dep_heads)
        att = attend_with_cache(q, dep_cache, causal_suffix=False).reshape(rows, self.d_model)
        return self.proj_s2(self.dep_norm(h + self.dep_out(att)))


class FastTokenizerDecoder:
    """The tokenizer's decoder over a cached history: decodes only the new rows."""

    def __init__(self, tokenizer: KronosTokenizer, dtype: torch.dtype = torch.float32):
        self.tokenizer = tokenizer
        self.blocks = [FastBlock(b, dtype) for b in tokenizer.decoder]
        self.rotary = tokenizer.decoder[0].self_attn.rotary if len(tokenizer.decoder) else None
        self.post = PackedLinear.of(tokenizer.post_quant_embed, dtype=dtype)
        self.head = PackedLinear.of(tokenizer.head, dtype=dtype)

    def _codes(self, ids: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.post(self.tokenizer.indices_to_bits(ids).to(self.tokenizer.head.weight.dtype))

    def decode_suffix(self, prefix_ids: tuple[torch.Tensor, torch.Tensor], suffix_ids: tuple[torch.Tensor, torch.Tensor],
                      paths: int) -> torch.Tensor:
        """Rows of the suffix of each window: equals `decode(cat(prefix, suffix))[:, P:]`.

        `prefix_ids` (s1, s2) have one row per series (B, P), `suffix_ids` one row per path
        (B*paths, T); the prefix is decoded once per series, not once per path.
        """
        zs = self._codes(suffix_ids)
        p = prefix_ids[0].shape[1]
        if self.blocks:
            rot_s = rotation(self.rotary, p, zs.shape[1])
            if p == 0:
                for block in self.blocks:
                    zs = block(zs, rot_s)
            else:
                zp = self._codes(prefix_ids)
                rot_p = rotation(self.rotary, 0, p)
                for i, block in enumerate(self.blocks):
                    cache = block.new_cache(zp.shape[0], p, paths, zs.shape[1])
                    zp = block.prefill(zp, rot_p, cache, keys_only=i == len(self.blocks) - 1)
                    zs = block.extend(zs, rot_s, cache)
        return self.head(zs)


Fast = TypeVar("Fast", FastKronos, FastTokenizerDecoder)


def fast_path(module: nn.Module, build: Callable[[nn.Module, torch.dtype], Fast], dtype: torch.dtype) -> Fast:
    """The fast form of `module` for its current weights and `dtype`, rebuilt after the
    weights change (in-place updates or new tensors): the one weight-version cache."""
    version = tuple((p._version, p.data_ptr()) for p in module.parameters())
    cache = module.__dict__.setdefault("_kronos_fast", {})
    key = (build, dtype)
    if key not in cache or cache[key][0] != version:
        cache[key] = (version, build(module, dtype))
    return cache[key][1]
