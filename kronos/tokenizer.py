"""KronosTokenizer: turns normalised OHLCVA rows into pairs of discrete tokens and back.

An encoder (causal transformer) maps each row to 20 binary codes; the first `s1_bits`
form the coarse token s1, the rest the fine token s2. The decoder inverts this; it is
causal too, which is what lets us decode only the forecast rows against a cached history.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .hub import HubMixin
from .linear import Linear
from .modules import BSQuantizer, TransformerBlock


class KronosTokenizer(nn.Module, HubMixin):
    """Published Kronos tokenizer; parameter names match the official checkpoints."""

    _name_kind = "tokenizer"

    def __init__(self, d_in: int, d_model: int, n_heads: int, ff_dim: int, n_enc_layers: int, n_dec_layers: int,
                 ffn_dropout_p: float, attn_dropout_p: float, resid_dropout_p: float, s1_bits: int, s2_bits: int,
                 beta: float, gamma0: float, gamma: float, zeta: float, group_size: int):
        super().__init__()
        self.config = dict(d_in=d_in, d_model=d_model, n_heads=n_heads, ff_dim=ff_dim, n_enc_layers=n_enc_layers,
                           n_dec_layers=n_dec_layers, ffn_dropout_p=ffn_dropout_p, attn_dropout_p=attn_dropout_p,
                           resid_dropout_p=resid_dropout_p, s1_bits=s1_bits, s2_bits=s2_bits, beta=beta,
                           gamma0=gamma0, gamma=gamma, zeta=zeta, group_size=group_size)
        self.d_in, self.d_model, self.s1_bits, self.s2_bits = d_in, d_model, s1_bits, s2_bits
        self.codebook_dim = s1_bits + s2_bits

        def block() -> TransformerBlock:
            return TransformerBlock(d_model, n_heads, ff_dim, ffn_dropout_p, attn_dropout_p, resid_dropout_p)

        self.embed = Linear(d_in, d_model)
        self.head = Linear(d_model, d_in)
        self.encoder = nn.ModuleList([block() for _ in range(n_enc_layers - 1)])
        self.decoder = nn.ModuleList([block() for _ in range(n_dec_layers - 1)])
        self.quant_embed = Linear(d_model, self.codebook_dim)
        self.post_quant_embed_pre = Linear(s1_bits, d_model)
        self.post_quant_embed = Linear(self.codebook_dim, d_model)
        self.tokenizer = BSQuantizer(s1_bits, s2_bits, beta, gamma0, gamma, zeta, group_size)

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

    def encode(self, x: torch.Tensor, half: bool = True):
        """Rows (B, T, d_in) -> token ids; `half=True` gives the (s1, s2) pair."""
        _, quantized, indices = self.tokenizer(self._encode_latent(x), with_loss=False)
        if half:
            return indices
        return BSQuantizer.bits_to_indices(quantized)

    def indices_to_bits(self, x, half: bool = True) -> torch.Tensor:
        """Token ids -> ±1/sqrt(codebook_dim) codes (least significant bit first)."""
        if half:
            mask = 2 ** torch.arange(self.s1_bits, device=x[0].device, dtype=torch.long)
            bits = torch.cat([(x[0].unsqueeze(-1) & mask) != 0, (x[1].unsqueeze(-1) & mask) != 0], dim=-1)
        else:
            mask = 2 ** torch.arange(self.codebook_dim, device=x.device, dtype=torch.long)
            bits = (x.unsqueeze(-1) & mask) != 0
        return (bits.float() * 2 - 1) / math.sqrt(self.codebook_dim)

    def decode(self, x, half: bool = True) -> torch.Tensor:
        """Token ids -> rows, decoding the whole window (the published algorithm)."""
        z = self.post_quant_embed(self.indices_to_bits(x, half))
        for layer in self.decoder:
            z = layer(z)
        return self.head(z)

    def decode_suffix(self, prefix_ids, suffix_ids, paths: int) -> torch.Tensor:
        """Decode only the suffix rows of each window, reusing the shared prefix.

        `prefix_ids` (s1, s2) have one row per series (B, P), `suffix_ids` one row per path
        (B*paths, T). Equals `decode(cat(prefix, suffix))[:, P:]`, without decoding the
        prefix once per path.
        """
        if prefix_ids[0].shape[1] == 0:
            return self.decode(suffix_ids)
        zp = self.post_quant_embed(self.indices_to_bits(prefix_ids))
        zs = self.post_quant_embed(self.indices_to_bits(suffix_ids))
        position = zp.shape[1]
        for i, layer in enumerate(self.decoder):
            zp, cache = layer.prefill_cache(zp, paths, zs.shape[1], keys_only=i == len(self.decoder) - 1)
            zs = layer(zs, cache=cache, position=position)
        return self.head(zs)
