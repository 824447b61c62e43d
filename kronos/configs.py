"""Architecture configs (the `config.json` contents) and the table of published models.

`TokenizerConfig` and `KronosConfig` hold a checkpoint's constructor arguments, as
nanoGPT's `GPTConfig` does; `TOKENIZER_CONFIGS`/`MODEL_CONFIGS` are the official shapes
(as keyword dicts, the form `config.json` and the published constructors take), used to
build models from scratch in tests, benchmarks and training. `HUB_MODELS` is the one table
of named models: which predictor pairs with which tokenizer, and its context length.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TokenizerConfig:
    """KronosTokenizer shape and BSQ loss weights (the tokenizer's config.json)."""

    d_in: int
    d_model: int
    n_heads: int
    ff_dim: int
    n_enc_layers: int  # the checkpoints hold one encoder block fewer than this
    n_dec_layers: int  # ... and one decoder block fewer than this
    ffn_dropout_p: float
    attn_dropout_p: float
    resid_dropout_p: float
    s1_bits: int
    s2_bits: int
    beta: float
    gamma0: float
    gamma: float
    zeta: float
    group_size: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KronosConfig:
    """Kronos predictor shape (the model's config.json)."""

    s1_bits: int
    s2_bits: int
    n_layers: int
    d_model: int
    n_heads: int
    ff_dim: int
    ffn_dropout_p: float
    attn_dropout_p: float
    resid_dropout_p: float
    token_dropout_p: float
    learn_te: bool  # learned time-embedding tables (else fixed sinusoids)

    def to_dict(self) -> dict:
        return asdict(self)


_TOKENIZER_BASE = TokenizerConfig(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
                                  ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=10,
                                  s2_bits=10, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4)

TOKENIZER_CONFIGS: dict[str, dict] = {
    "Kronos-Tokenizer-base": _TOKENIZER_BASE.to_dict(),
    "Kronos-Tokenizer-2k": {**_TOKENIZER_BASE.to_dict(), "group_size": 5},
}

MODEL_CONFIGS: dict[str, dict] = {
    "Kronos-mini": KronosConfig(s1_bits=10, s2_bits=10, n_layers=4, d_model=256, n_heads=4, ff_dim=512,
                                ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2, token_dropout_p=0.0,
                                learn_te=True).to_dict(),
    "Kronos-small": KronosConfig(s1_bits=10, s2_bits=10, n_layers=8, d_model=512, n_heads=8, ff_dim=1024,
                                 ffn_dropout_p=0.25, attn_dropout_p=0.1, resid_dropout_p=0.25, token_dropout_p=0.1,
                                 learn_te=True).to_dict(),
    "Kronos-base": KronosConfig(s1_bits=10, s2_bits=10, n_layers=12, d_model=832, n_heads=16, ff_dim=2048,
                                ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2, token_dropout_p=0.0,
                                learn_te=True).to_dict(),
}


@dataclass(frozen=True)
class PretrainedSpec:
    """A named model: where its predictor and tokenizer live and its context length."""

    model: str
    tokenizer: str
    max_context: int
    trained_window: tuple[int, int] | None = None  # (lookback, horizon) the pair's card says it was trained on

    @property
    def model_config(self) -> dict | None:
        """The official architecture of a hub predictor (None for local checkpoints)."""
        return MODEL_CONFIGS.get(self.model.rsplit("/", 1)[-1])

    @property
    def tokenizer_config(self) -> dict | None:
        """The official architecture of a hub tokenizer (None for local checkpoints)."""
        return TOKENIZER_CONFIGS.get(self.tokenizer.rsplit("/", 1)[-1])


# The published pairs (docs/kronos-compat.md): each predictor with the tokenizer it was trained with.
HUB_MODELS: dict[str, PretrainedSpec] = {
    "kronos-mini": PretrainedSpec("NeoQuasar/Kronos-mini", "NeoQuasar/Kronos-Tokenizer-2k", 2048),
    "kronos-small": PretrainedSpec("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base", 512),
    "kronos-base": PretrainedSpec("NeoQuasar/Kronos-base", "NeoQuasar/Kronos-Tokenizer-base", 512),
}
