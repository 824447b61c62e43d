"""Named architecture sizes for training from scratch.

`nano` is the small pair bundled with the package (a few MB, trainable on a laptop CPU);
`mini`, `small` and `base` are the published architectures (`kronos.configs`), built with
random weights. Names like `kronos-small` are *checkpoints* (fine-tuning), not sizes.
"""
from __future__ import annotations

from ..configs import HUB_MODELS, MODEL_CONFIGS

NANO_TOKENIZER: dict = dict(d_in=6, d_model=64, n_heads=2, ff_dim=128, n_enc_layers=2, n_dec_layers=2,
                            ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=10, s2_bits=10,
                            beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4)
NANO_MODEL: dict = dict(s1_bits=10, s2_bits=10, n_layers=3, d_model=128, n_heads=4, ff_dim=256,
                        ffn_dropout_p=0.1, attn_dropout_p=0.0, resid_dropout_p=0.1, token_dropout_p=0.0,
                        learn_te=True)

TOKENIZER_SIZES: dict[str, dict] = {
    "nano": NANO_TOKENIZER,
    "mini": HUB_MODELS["kronos-mini"].tokenizer_config,
    "small": HUB_MODELS["kronos-small"].tokenizer_config,
    "base": HUB_MODELS["kronos-base"].tokenizer_config,
}
MODEL_SIZES: dict[str, dict] = {
    "nano": NANO_MODEL,
    "mini": MODEL_CONFIGS["Kronos-mini"],
    "small": MODEL_CONFIGS["Kronos-small"],
    "base": MODEL_CONFIGS["Kronos-base"],
}
SIZE_NAMES = ("nano", "mini", "small", "base")


def tokenizer_size(name: str) -> dict | None:
    """The tokenizer config of a size name ('nano', 'mini', 'small', 'base'), else None."""
    cfg = TOKENIZER_SIZES.get(str(name).lower())
    return dict(cfg) if cfg is not None else None


def model_size(name: str) -> dict | None:
    """The predictor config of a size name ('nano', 'mini', 'small', 'base'), else None."""
    cfg = MODEL_SIZES.get(str(name).lower())
    return dict(cfg) if cfg is not None else None
