"""Kronos: the autoregressive transformer over hierarchical (s1, s2) tokens.

`decode_s1`/`decode_s2` are the published uncached calls (full window every step).
`prefill` runs a shared history once and returns caches for `decoding.FastDecoder`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hub import HubMixin
from .modules import DependencyAwareLayer, DualHead, HierarchicalEmbedding, KVCache, RMSNorm, TemporalEmbedding, \
    TransformerBlock


class Kronos(nn.Module, HubMixin):
    """Published Kronos predictor; parameter names match the official checkpoints."""

    def __init__(self, s1_bits: int, s2_bits: int, n_layers: int, d_model: int, n_heads: int, ff_dim: int,
                 ffn_dropout_p: float, attn_dropout_p: float, resid_dropout_p: float, token_dropout_p: float,
                 learn_te: bool):
        super().__init__()
        self.config = dict(s1_bits=s1_bits, s2_bits=s2_bits, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                           ff_dim=ff_dim, ffn_dropout_p=ffn_dropout_p, attn_dropout_p=attn_dropout_p,
                           resid_dropout_p=resid_dropout_p, token_dropout_p=token_dropout_p, learn_te=learn_te)
        self.s1_bits, self.s2_bits, self.d_model = s1_bits, s2_bits, d_model
        self.s1_vocab_size = 2 ** s1_bits
        self.embedding = HierarchicalEmbedding(s1_bits, s2_bits, d_model)
        self.time_emb = TemporalEmbedding(d_model, learn_te)
        self.token_drop = nn.Dropout(token_dropout_p)
        self.transformer = nn.ModuleList([
            TransformerBlock(d_model, n_heads, ff_dim, ffn_dropout_p, attn_dropout_p, resid_dropout_p)
            for _ in range(n_layers)])
        self.norm = RMSNorm(d_model)
        self.dep_layer = DependencyAwareLayer(d_model)
        self.head = DualHead(s1_bits, s2_bits, d_model)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and module.weight.requires_grad:
            nn.init.normal_(module.weight, mean=0, std=self.d_model ** -0.5)

    def _embed(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None) -> torch.Tensor:
        x = self.embedding([s1_ids, s2_ids])
        if stamp is not None:
            x = x + self.time_emb(stamp)
        return self.token_drop(x)

    def forward(self, s1_ids, s2_ids, stamp=None, padding_mask=None, use_teacher_forcing=False, s1_targets=None):
        """Training pass: s1 logits and s2 logits conditioned on s1 (true s1 with teacher forcing)."""
        x = self._embed(s1_ids, s2_ids, stamp)
        for layer in self.transformer:
            x = layer(x, key_padding_mask=padding_mask)
        x = self.norm(x)
        s1_logits = self.head(x)
        if use_teacher_forcing:
            sibling = self.embedding.emb_s1(s1_targets)
        else:
            probs = F.softmax(s1_logits.detach(), dim=-1)
            sampled = torch.multinomial(probs.view(-1, self.s1_vocab_size), 1).view(s1_ids.shape)
            sibling = self.embedding.emb_s1(sampled)
        s2_logits = self.head.cond_forward(self.dep_layer(x, sibling, key_padding_mask=padding_mask))
        return s1_logits, s2_logits

    def decode_s1(self, s1_ids, s2_ids, stamp=None, padding_mask=None):
        """Uncached: s1 logits for every position and the final-norm hidden states."""
        x = self._embed(s1_ids, s2_ids, stamp)
        for layer in self.transformer:
            x = layer(x, key_padding_mask=padding_mask)
        x = self.norm(x)
        return self.head(x), x

    def decode_s2(self, context, s1_ids, padding_mask=None):
        """Uncached: s2 logits given the window's hidden states and the sampled s1."""
        sibling = self.embedding.emb_s1(s1_ids)
        return self.head.cond_forward(self.dep_layer(context, sibling, key_padding_mask=padding_mask))

    # --- cached generation -------------------------------------------------------------
    def prefill(self, s1_ids, s2_ids, stamp, paths: int, capacity: int):
        """Run the shared history once per series (B rows) and set up caches sized for
        `paths` rows per series and `capacity` generated tokens.

        Returns the last position's hidden state (B, d), the per-layer caches and the
        dependency layer's cache over the hidden states.
        """
        x = self._embed(s1_ids, s2_ids, stamp)
        caches = []
        for layer in self.transformer:
            x, cache = layer.prefill_cache(x, paths, capacity)
            caches.append(cache)
        h = self.norm(x)
        attn = self.dep_layer.cross_attn
        k, v = attn._heads(attn.k_proj(h)), attn._heads(attn.v_proj(h))
        return h[:, -1], caches, KVCache.from_prefix(k, v, paths, capacity)

    def extend(self, s1_ids, s2_ids, stamp, caches: list[KVCache], dep_cache: KVCache, position: int):
        """Feed T tokens per row (B*S, T) after the cached prefix, at `position` onwards;
        returns their final-norm hidden states (B*S, T, d)."""
        x = self._embed(s1_ids, s2_ids, stamp)
        for layer, cache in zip(self.transformer, caches):
            x = layer(x, cache=cache, position=position)
        h = self.norm(x)
        attn = self.dep_layer.cross_attn
        dep_cache.append(attn._heads(attn.k_proj(h)), attn._heads(attn.v_proj(h)))
        return h
