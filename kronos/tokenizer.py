"""KronosTokenizer: turns normalised OHLCVA rows into pairs of discrete tokens and back.

An encoder (causal transformer) maps each row to 20 binary codes; the first `s1_bits`
form the coarse token s1, the rest the fine token s2. The decoder inverts this; it is
causal too, which is what lets the fast path (`kronos.fast`) decode only the forecast rows
against a cached history. Encoding runs only here, on torch's default kernels, so that the
codes are bit-identical to the published code's.
"""
from __future__ import annotations

import math

from typing import Any

import torch
from torch import nn

from .configs import TokenizerConfig
from .hub import HubMixin
from .modules import BSQuantizer, TransformerBlock


class KronosTokenizer(nn.Module, HubMixin):
    """Published Kronos tokenizer; parameter names match the official checkpoints."""

    _name_kind = "tokenizer"

    def __init__(self, config: TokenizerConfig | None = None, /, **fields: Any):
        """`KronosTokenizer(TokenizerConfig(...))`, or the config's fields as keywords (the
        published constructor and `config.json`)."""
        super().__init__()
        self.config = c = config if config is not None else TokenizerConfig(**fields)
        d_in, d_model, s1_bits, s2_bits = c.d_in, c.d_model, c.s1_bits, c.s2_bits
        self.d_in, self.d_model, self.s1_bits, self.s2_bits = d_in, d_model, s1_bits, s2_bits
        self.codebook_dim = s1_bits + s2_bits

        def block() -> TransformerBlock:
            return TransformerBlock(d_model, c.n_heads, c.ff_dim, c.ffn_dropout_p, c.attn_dropout_p, c.resid_dropout_p)

        self.embed = nn.Linear(d_in, d_model)
        self.head = nn.Linear(d_model, d_in)
        self.encoder = nn.ModuleList([block() for _ in range(c.n_enc_layers - 1)])
        self.decoder = nn.ModuleList([block() for _ in range(c.n_dec_layers - 1)])
        self.quant_embed = nn.Linear(d_model, self.codebook_dim)
        self.post_quant_embed_pre = nn.Linear(s1_bits, d_model)
        self.post_quant_embed = nn.Linear(self.codebook_dim, d_model)
        self.tokenizer = BSQuantizer(s1_bits, s2_bits, c.beta, c.gamma0, c.gamma, c.zeta, c.group_size)

    def _encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        for layer in self.encoder:
            z = layer(z)
        return self.quant_embed(z)

    def forward(self, x: torch.Tensor):
        """Training pass: returns ((coarse recon, full recon), bsq_loss, quantized, indices)."""
        bsq_loss, quantized, indices = self.tokenizer(self._encode_latent(x))
        z_pre = self.post_quant_embed_pre(quantized[..., :self.s1_bits])
        z = self.post_quant_embed(quantized)
        for layer in self.decoder:
            z_pre = layer(z_pre)
        for layer in self.decoder:
            z = layer(z)
        return (self.head(z_pre), self.head(z)), bsq_loss, quantized, indices

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (B, T, d_in) -> the (s1, s2) token ids, each (B, T)."""
        _, _, indices = self.tokenizer(self._encode_latent(x), with_loss=False)
        return indices

    def indices_to_bits(self, ids: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(s1, s2) ids -> ±1/sqrt(codebook_dim) codes (least significant bit first)."""
        s1, s2 = ids
        weights = 2 ** torch.arange(max(self.s1_bits, self.s2_bits), device=s1.device, dtype=torch.long)
        bits = torch.cat([(s1.unsqueeze(-1) & weights[:self.s1_bits]) != 0,
                          (s2.unsqueeze(-1) & weights[:self.s2_bits]) != 0], dim=-1)
        return (bits.float() * 2 - 1) / math.sqrt(self.codebook_dim)

    def decode(self, ids: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(s1, s2) ids -> rows, decoding the whole window (the published algorithm)."""
        z = self.post_quant_embed(self.indices_to_bits(ids))
        for layer in self.decoder:
            z = layer(z)
        return self.head(z)
