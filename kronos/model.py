"""Kronos: the autoregressive transformer over hierarchical (s1, s2) tokens.

The plain model: `forward` is the training pass, `decode_s1`/`decode_s2` are the published
inference calls (the full window every step). Cached generation lives in `kronos.fast`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .configs import KronosConfig
from .hub import HubMixin
from .modules import DependencyAwareLayer, DualHead, HierarchicalEmbedding, RMSNorm, TemporalEmbedding, \
    TransformerBlock


class Kronos(nn.Module, HubMixin):
    """Published Kronos predictor; parameter names match the official checkpoints."""

    def __init__(self, config: KronosConfig | None = None, /, **fields: Any):
        """`Kronos(KronosConfig(...))`, or the config's fields as keywords (the published
        constructor and `config.json`)."""
        super().__init__()
        self.config = config if config is not None else KronosConfig(**fields)
        c = self.config
        s1_bits, s2_bits, d_model = c.s1_bits, c.s2_bits, c.d_model
        self.s1_bits, self.s2_bits, self.d_model = s1_bits, s2_bits, d_model
        self.s1_vocab_size = 2 ** s1_bits
        self.embedding = HierarchicalEmbedding(s1_bits, s2_bits, d_model)
        self.time_emb = TemporalEmbedding(d_model, c.learn_te)
        self.token_drop = nn.Dropout(c.token_dropout_p)
        self.transformer = nn.ModuleList([
            TransformerBlock(d_model, c.n_heads, c.ff_dim, c.ffn_dropout_p, c.attn_dropout_p, c.resid_dropout_p)
            for _ in range(c.n_layers)])
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

    def forward(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, *,
                s1_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass (teacher forcing): s1 logits, and s2 logits conditioned on the true
        next s1 tokens `s1_targets`."""
        s1_logits, x = self.decode_s1(s1_ids, s2_ids, stamp, padding_mask)
        return s1_logits, self.decode_s2(x, s1_targets, padding_mask)

    def decode_s1(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None = None,
                  padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """s1 logits for every position and the final-norm hidden states."""
        x = self._embed(s1_ids, s2_ids, stamp)
        for layer in self.transformer:
            x = layer(x, key_padding_mask=padding_mask)
        x = self.norm(x)
        return self.head(x), x

    def decode_s2(self, context: torch.Tensor, s1_ids: torch.Tensor,
                  padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """s2 logits given the window's hidden states and the sampled (or true) s1."""
        sibling = self.embedding.emb_s1(s1_ids)
        return self.head.cond_forward(self.dep_layer(context, sibling, key_padding_mask=padding_mask))
