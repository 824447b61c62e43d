"""The per-token decode step, tuned for the few-row matrix products of generation.

One decode step multiplies a handful of rows by every weight of the model, so it is bound
by reading weights and by per-operation overhead, not by arithmetic. This module fuses the
q/k/v and the two SwiGLU input projections into single products (packed for the CPU,
see `linear`), rotates q and k together with precomputed tables, and works on 2-D
(rows x features) tensors. The arithmetic is the model's own: results match `Kronos` to
float rounding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .linear import PackedLinear, packed
from .model import Kronos
from .modules import KVCache, attend_with_cache


def _fused(*layers: torch.nn.Linear) -> PackedLinear:
    weight = torch.cat([l.weight.detach() for l in layers])
    bias = None if layers[0].bias is None else torch.cat([l.bias.detach() for l in layers])
    return PackedLinear(weight, bias)


class _Block:
    def __init__(self, block):
        attn = block.self_attn
        self.heads, self.head_dim, self.d_model = attn.n_heads, attn.head_dim, attn.d_model
        self.norm1, self.norm2 = block.norm1.weight.detach(), block.norm2.weight.detach()
        self.qkv = _fused(attn.q_proj, attn.k_proj, attn.v_proj)
        self.out = packed(attn.out_proj)
        self.w13 = _fused(block.ffn.w1, block.ffn.w3)
        self.w2 = packed(block.ffn.w2)
        self.ff_dim = block.ffn.w1.out_features
        self.rotary = attn.rotary


class FastDecoder:
    """Cached decode step and heads of a `Kronos` model, built once per set of weights."""

    def __init__(self, model: Kronos):
        self.model = model
        self.d_model = model.d_model
        self.eps = model.norm.eps
        self.blocks = [_Block(b) for b in model.transformer]
        self.norm = model.norm.weight.detach()
        self.dtype = self.norm.dtype
        self.fusion = packed(model.embedding.fusion_proj)
        self.proj_s1 = packed(model.head.proj_s1)
        self.proj_s2 = packed(model.head.proj_s2)
        dep = model.dep_layer.cross_attn
        self.dep_heads, self.dep_q, self.dep_kv = dep.n_heads, packed(dep.q_proj), _fused(dep.k_proj, dep.v_proj)
        self.dep_out, self.dep_norm = packed(dep.out_proj), model.dep_layer.norm.weight.detach()
        self._rotary: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def for_model(model: Kronos) -> "FastDecoder":
        """The decoder for the model's current weights (rebuilt after they change)."""
        version = tuple(p._version for p in model.parameters()) + tuple(p.data_ptr() for p in model.parameters())
        cached = getattr(model, "_fast_decoder", None)
        if cached is None or cached[0] != version:
            cached = (version, FastDecoder(model))
            object.__setattr__(model, "_fast_decoder", cached)
        return cached[1]

    def _rotation(self, block: _Block, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and (sign-folded) sin at `position`, kept for the steps of one position."""
        key = (block.head_dim, position)
        if key not in self._rotary:
            cos, sin = block.rotary.cos_sin(torch.tensor([position], device=block.rotary.inv_freq.device), self.dtype)
            self._rotary = {k: v for k, v in self._rotary.items() if k[1] >= position - 1}
            self._rotary[key] = (cos.reshape(-1), sin.reshape(-1))
        return self._rotary[key]

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def step(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor, caches: list[KVCache],
             dep_cache: KVCache, position: int) -> torch.Tensor:
        """Feed one token per row; returns the final-norm hidden state (rows, d)."""
        m = self.model
        scale = math.sqrt(self.d_model)
        emb = torch.cat((m.embedding.emb_s1.weight[s1] * scale, m.embedding.emb_s2.weight[s2] * scale), -1)
        x = self.fusion(emb) + m.time_emb(stamp[:, None])[:, 0]
        rows = x.shape[0]
        for block, cache in zip(self.blocks, caches):
            hd, nh, d = block.head_dim, block.heads, block.d_model
            qkv = block.qkv(self._norm(x, block.norm1))
            cos, sin = self._rotation(block, position)
            qk = qkv[:, :2 * d].reshape(rows, 2 * nh, hd)
            qk = qk * cos + qk.roll(hd // 2, -1) * sin
            cache.append(qk[:, nh:, None], qkv[:, 2 * d:].reshape(rows, nh, 1, hd))
            att = attend_with_cache(qk[:, :nh, None], cache, causal_suffix=False)
            x = x + block.out(att.reshape(rows, d))
            g = block.w13(self._norm(x, block.norm2))
            x = x + block.w2(F.silu(g[:, :block.ff_dim]) * g[:, block.ff_dim:])
        h = self._norm(x, self.norm)
        kv = self.dep_kv(h)
        hd = self.d_model // self.dep_heads
        dep_cache.append(kv[:, :self.d_model].reshape(rows, self.dep_heads, 1, hd),
                         kv[:, self.d_model:].reshape(rows, self.dep_heads, 1, hd))
        return h

    def s1_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj_s1(h)

    def s2_logits(self, h: torch.Tensor, s1: torch.Tensor, dep_cache: KVCache) -> torch.Tensor:
        """s2 logits from the last hidden state, the sampled s1 and the window's cache."""
        rows = h.shape[0]
        hd = self.d_model // self.dep_heads
        q = self.dep_q(self.model.embedding.emb_s1.weight[s1]).reshape(rows, self.dep_heads, 1, hd)
        att = attend_with_cache(q, dep_cache, causal_suffix=False).reshape(rows, self.d_model)
        return self.proj_s2(self._norm(h + self.dep_out(att), self.dep_norm))
