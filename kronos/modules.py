"""Building blocks shared by the Kronos tokenizer and predictor: the plain model.

Parameter and buffer names follow the published checkpoints exactly (docs/kronos-compat.md),
so `load_state_dict(strict=True)` accepts official weights. These modules compute what the
published code computes, with the same operations in the same order on torch's default
kernels (`nn.Linear`), so that the tokenizer's codes are bit-identical to the published
ones. Generation's fast path (`kronos.fast`) reuses the norms, rotary tables and weights
defined here and only replaces how the products are run.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, as in the published code."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x / rms(x), in float32."""
        xf = x.float()
        return xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x).type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU feed-forward without biases: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, ff_dim: int, dropout_p: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(swiglu(self.w1(x), self.w3(x))))


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The SwiGLU activation silu(gate) * up (also used by the fast path's fused product)."""
    return F.silu(gate) * up


def pre_norm_block(x: torch.Tensor, norm1: Callable, attend: Callable, norm2: Callable,
                   feed_forward: Callable) -> torch.Tensor:
    """A transformer block's wiring, x + attend(norm1(x)) then x + feed_forward(norm2(x)):
    written once for the plain block and the fast path's cached one (`kronos.fast`)."""
    x = x + attend(norm1(x))
    return x + feed_forward(norm2(x))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding, base 10000, "rotate half" convention."""

    def __init__(self, head_dim: int):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)  # persistent: it is in the checkpoints

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables (T, 1, head_dim) for `positions`, laid out for x (..., T, heads,
        head_dim); the sin's first half is negated, so that `rotate` adds products only."""
        freqs = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        sin = emb.sin()
        sin[:, :freqs.shape[1]].neg_()
        return emb.cos().to(dtype)[:, None], sin.to(dtype)[:, None]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x * cos + rotate_half(x) * sin for x (..., T, heads, head_dim), rotate_half(x) =
        cat(-x2, x1). Each half adds one product of the other half to x * cos: the published
        roundings (negation is exact) without materialising rotate_half, on x's own
        contiguous layout (before the heads are transposed), several times faster."""
        half = x.shape[-1] // 2
        out = x * cos
        out[..., :half] += x[..., half:] * sin[..., :half]
        out[..., half:] += x[..., :half] * sin[..., half:]
        return out


class MultiHeadAttention(nn.Module):
    """Causal self-attention with rotary positions and biased projections."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0):
        super().__init__()
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim)
        self.attn_dropout_p = attn_dropout_p
        self.resid_dropout = nn.Dropout(resid_dropout_p)

    def _heads(self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, T, d) -> (B, heads, T, head_dim), rotated first when `rotation` is given."""
        b, t, _ = x.shape
        x = x.view(b, t, self.n_heads, self.head_dim)
        return (x if rotation is None else self.rotary.rotate(x, *rotation)).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        rotation = self.rotary.cos_sin(torch.arange(t, device=x.device), x.dtype)
        q, k = self._heads(self.q_proj(x), rotation), self._heads(self.k_proj(x), rotation)
        v = self._heads(self.v_proj(x))
        mask = None
        if key_padding_mask is not None:  # True marks padding, as in the published code
            mask = (~key_padding_mask)[:, None, None, :].expand(b, self.n_heads, t, t)
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        dropout = self.attn_dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None)
        out = out.transpose(1, 2).contiguous().view(b, t, self.d_model)
        return self.resid_dropout(self.out_proj(out))


class CrossAttention(MultiHeadAttention):
    """Attention of the sampled s1 embedding over the window's hidden states.

    At inference the published code rotates every key with position 0 (a no-op) and uses no
    mask; in training (query length == key length) it applies positions and a causal mask.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = query.shape
        rotation = self.rotary.cos_sin(torch.arange(t, device=query.device), query.dtype) if self.training else None
        q, k = self._heads(self.q_proj(query), rotation), self._heads(self.k_proj(key), rotation)
        v = self._heads(self.v_proj(value))
        mask = None
        if key_padding_mask is not None:
            mask = (~key_padding_mask)[:, None, None, :].expand(b, self.n_heads, t, k.shape[2])
        dropout = self.attn_dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                             is_causal=self.training and mask is None)
        out = out.transpose(1, 2).contiguous().view(b, t, self.d_model)
        return self.resid_dropout(self.out_proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + ffn(norm2(x))."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int = 1024, ffn_dropout_p: float = 0.0,
                 attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout_p, resid_dropout_p)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim, ffn_dropout_p)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return pre_norm_block(x, self.norm1, lambda h: self.self_attn(h, key_padding_mask), self.norm2, self.ffn)


class BinarySphericalQuantizer(nn.Module):
    """Binary spherical quantizer (BSQ) with the soft-entropy training loss.

    Codes are signs of the L2-normalised input scaled by 1/sqrt(embed_dim). The loss is
    beta * commitment + zeta * (gamma0 * per-sample entropy - gamma * codebook entropy),
    with the codebook entropy computed over groups of `group_size` bits.
    """

    def __init__(self, embed_dim: int, beta: float, gamma0: float, gamma: float, zeta: float, group_size: int):
        super().__init__()
        self.embed_dim, self.beta, self.gamma0, self.gamma, self.zeta = embed_dim, beta, gamma0, gamma, zeta
        self.group_size = group_size
        self.register_buffer("basis", 2 ** torch.arange(embed_dim - 1, -1, -1))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1))
        codes = ((torch.arange(2 ** group_size)[:, None] & self.group_basis) != 0).float() * 2 - 1
        self.register_buffer("group_codebook", codes, persistent=False)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        zhat = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
        return z + (zhat - z).detach()  # straight-through gradient

    def forward(self, z: torch.Tensor, with_loss: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        zq = self.quantize(z) / math.sqrt(self.embed_dim)
        if not with_loss:
            return zq, zq.new_zeros(())
        commit = self.beta * torch.mean(((zq.detach() - z) ** 2).sum(dim=-1))
        return zq, commit + self.zeta * self._entropy_penalty(z)

    def _entropy_penalty(self, z: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.embed_dim)
        p = torch.sigmoid(-4 * z / scale)  # analytic per-bit probabilities
        bit_probs = torch.stack([p, 1 - p], dim=-1)
        per_sample = _entropy(bit_probs).sum(dim=-1).mean()
        groups = z.reshape(*z.shape[:-1], -1, self.group_size)
        logits = 2 * torch.einsum("...gc,dc->...gd", groups, self.group_codebook / scale)
        avg_prob = logits.softmax(dim=-1).reshape(-1, groups.shape[-2], 2 ** self.group_size).mean(dim=0)
        codebook = _entropy(avg_prob).sum()
        return self.gamma0 * per_sample - self.gamma * codebook


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim=-1)


class BSQuantizer(nn.Module):
    """Normalises, quantizes and splits codes into the coarse (s1) and fine (s2) tokens."""

    def __init__(self, s1_bits: int, s2_bits: int, beta: float, gamma0: float, gamma: float, zeta: float,
                 group_size: int):
        super().__init__()
        self.s1_bits, self.s2_bits = s1_bits, s2_bits
        self.bsq = BinarySphericalQuantizer(s1_bits + s2_bits, beta, gamma0, gamma, zeta, group_size)

    @staticmethod
    def bits_to_indices(bits: torch.Tensor) -> torch.Tensor:
        weights = 2 ** torch.arange(bits.shape[-1], device=bits.device, dtype=torch.long)
        return ((bits >= 0).long() * weights).sum(-1)

    def forward(self, z: torch.Tensor, with_loss: bool = True):
        quantized, loss = self.bsq(F.normalize(z, dim=-1), with_loss)
        indices = (self.bits_to_indices(quantized[..., :self.s1_bits]),
                   self.bits_to_indices(quantized[..., self.s1_bits:]))
        return loss, quantized, indices


class HierarchicalEmbedding(nn.Module):
    """Fuses the s1 and s2 token embeddings (each scaled by sqrt(d_model))."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.emb_s1 = nn.Embedding(2 ** s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2 ** s2_bits, d_model)
        self.fusion_proj = nn.Linear(2 * d_model, d_model)

    def forward(self, token_ids) -> torch.Tensor:
        s1_ids, s2_ids = token_ids
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat([self.emb_s1(s1_ids) * scale, self.emb_s2(s2_ids) * scale], dim=-1))


class FixedEmbedding(nn.Module):
    """Frozen sinusoidal table, used when `learn_te` is false."""

    def __init__(self, rows: int, d_model: int):
        super().__init__()
        w = torch.zeros(rows, d_model)
        position = torch.arange(rows).float()[:, None]
        div = (torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model)).exp()
        w[:, 0::2], w[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        self.emb = nn.Embedding(rows, d_model)
        self.emb.weight = nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x).detach()


TIME_FEATURES = ("minute", "hour", "weekday", "day", "month")


class TemporalEmbedding(nn.Module):
    """Sum of minute, hour, weekday, day-of-month and month embeddings."""

    def __init__(self, d_model: int, learn_te: bool):
        super().__init__()
        table = nn.Embedding if learn_te else FixedEmbedding
        self.minute_embed = table(60, d_model)
        self.hour_embed = table(24, d_model)
        self.weekday_embed = table(7, d_model)
        self.day_embed = table(32, d_model)
        self.month_embed = table(13, d_model)

    def forward(self, stamp: torch.Tensor) -> torch.Tensor:
        x = stamp.long()
        return (self.hour_embed(x[..., 1]) + self.weekday_embed(x[..., 2]) + self.day_embed(x[..., 3])
                + self.month_embed(x[..., 4]) + self.minute_embed(x[..., 0]))


class DependencyAwareLayer(nn.Module):
    """Conditions the s2 head on the sampled s1 token: norm(h + cross_attn(emb_s1, h))."""

    def __init__(self, d_model: int, n_heads: int = 4, attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0):
        super().__init__()
        self.cross_attn = CrossAttention(d_model, n_heads, attn_dropout_p, resid_dropout_p)
        self.norm = RMSNorm(d_model)

    def forward(self, hidden_states: torch.Tensor, sibling_embed: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn = self.cross_attn(sibling_embed, hidden_states, hidden_states, key_padding_mask)
        return self.norm(hidden_states + attn)


class DualHead(nn.Module):
    """Logit heads for the coarse (s1) and fine (s2) tokens."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int):
        super().__init__()
        self.vocab_s1, self.vocab_s2 = 2 ** s1_bits, 2 ** s2_bits
        self.proj_s1 = nn.Linear(d_model, self.vocab_s1)
        self.proj_s2 = nn.Linear(d_model, self.vocab_s2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_s1(x)

    def cond_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_s2(x)

    def compute_loss(self, s1_logits, s2_logits, s1_targets, s2_targets, padding_mask=None):
        """Mean of the s1 and s2 next-token cross-entropies (padding excluded)."""
        if padding_mask is not None:
            keep = ~padding_mask
            s1_logits, s2_logits = s1_logits[keep], s2_logits[keep]
            s1_targets, s2_targets = s1_targets[keep], s2_targets[keep]
        ce_s1 = F.cross_entropy(s1_logits.reshape(-1, self.vocab_s1), s1_targets.reshape(-1))
        ce_s2 = F.cross_entropy(s2_logits.reshape(-1, self.vocab_s2), s2_targets.reshape(-1))
        return (ce_s1 + ce_s2) / 2, ce_s1, ce_s2
