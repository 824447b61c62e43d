"""Architecture configs of the published checkpoints (the `config.json` contents).

Used to build models from scratch (tests, training) with exactly the official shapes.
"""
from __future__ import annotations

_TOKENIZER_BASE = dict(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
                       ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=10, s2_bits=10,
                       beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4)

TOKENIZER_CONFIGS: dict[str, dict] = {
    "Kronos-Tokenizer-base": _TOKENIZER_BASE,
    "Kronos-Tokenizer-2k": {**_TOKENIZER_BASE, "group_size": 5},
}

MODEL_CONFIGS: dict[str, dict] = {
    "Kronos-mini": dict(s1_bits=10, s2_bits=10, n_layers=4, d_model=256, n_heads=4, ff_dim=512,
                        ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2, token_dropout_p=0.0,
                        learn_te=True),
    "Kronos-small": dict(s1_bits=10, s2_bits=10, n_layers=8, d_model=512, n_heads=8, ff_dim=1024,
                         ffn_dropout_p=0.25, attn_dropout_p=0.1, resid_dropout_p=0.25, token_dropout_p=0.1,
                         learn_te=True),
    "Kronos-base": dict(s1_bits=10, s2_bits=10, n_layers=12, d_model=832, n_heads=16, ff_dim=2048,
                        ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2, token_dropout_p=0.0,
                        learn_te=True),
}

# Which tokenizer each predictor was trained with, and its context length.
PAIRINGS: dict[str, tuple[str, int]] = {
    "Kronos-mini": ("Kronos-Tokenizer-2k", 2048),
    "Kronos-small": ("Kronos-Tokenizer-base", 512),
    "Kronos-base": ("Kronos-Tokenizer-base", 512),
}
