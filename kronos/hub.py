"""Loading and saving checkpoints in the published layout (config.json + model.safetensors).

Only safetensors is ever read (no pickle). Loading is strict: a checkpoint whose keys or
shapes differ from the architecture is refused with the offending names. Models come back
in eval mode, because the published loader leaves dropout on.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .configs import HUB_MODELS, PretrainedSpec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint could not be found, downloaded or matched to the architecture."""


BUNDLED_DIR = Path(__file__).parent / "bundled"
PAIR_FILE = "kronos.json"  # in a local pair directory: {"max_context": ...}


def _trained_window(meta: dict) -> tuple[int, int] | None:
    """`"trained_window": {"lookback": 256, "horizon": 32}` of a pair's card, if it states one."""
    try:
        window = meta.get("trained_window") or {}
        return int(window["lookback"]), int(window["horizon"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def window_warnings(trained: tuple[int, int] | None, lookback: int, horizon: int,
                    model: str = "the model") -> list[str]:
    """What is wrong with a lookback + horizon far from the window the pair's card says
    `model` was trained on (`PretrainedSpec.trained_window`): the one rule for the
    predictor's per-call warnings and the trader's per-configuration ones."""
    if trained is None:
        return []
    trained_lookback, trained_horizon = trained
    out = []
    if not trained_lookback / 2 <= lookback <= trained_lookback * 1.25:
        out.append(f"lookback {lookback} is far from the {trained_lookback} bars {model} was trained on; "
                   f"its forecasts may jump or mis-state their spread")
    if horizon > trained_horizon * 2:
        out.append(f"horizon {horizon} is far beyond the {trained_horizon} bars {model} was trained to forecast")
    return out


def resolve_spec(name: str) -> PretrainedSpec:
    """Resolve a short name, a bundled model name or a local pair directory.

    A pair directory holds `tokenizer/` and `model/` checkpoint folders and optionally a
    `kronos.json` with the context length and the window it was trained on.
    """
    key = name.lower()
    if key in HUB_MODELS:
        return HUB_MODELS[key]
    for directory in (BUNDLED_DIR / key, Path(name).expanduser()):
        if (directory / "model").is_dir() and (directory / "tokenizer").is_dir():
            meta = json.loads((directory / PAIR_FILE).read_text()) if (directory / PAIR_FILE).exists() else {}
            return PretrainedSpec(str(directory / "model"), str(directory / "tokenizer"),
                                  int(meta.get("max_context", 512)), _trained_window(meta))
    known = sorted(HUB_MODELS) + sorted(p.name for p in BUNDLED_DIR.glob("*") if p.is_dir())
    raise CheckpointError(f"unknown model '{name}': use one of {', '.join(known)}, or a directory holding "
                          f"tokenizer/ and model/ checkpoints")


def _resolve_file(repo_id_or_dir: str, filename: str, revision: str | None, cache_dir: str | None,
                  local_files_only: bool, token: str | bool | None) -> Path:
    local = Path(repo_id_or_dir).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            hint = " (pickle checkpoints are not supported: convert to safetensors)" \
                if filename == WEIGHTS_NAME and any(local.glob("*.bin")) else ""
            raise CheckpointError(f"{path} not found{hint}")
        return path
    from huggingface_hub import hf_hub_download  # imported lazily: not needed for local use
    try:
        return Path(hf_hub_download(repo_id_or_dir, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, token=token))
    except Exception as exc:  # the hub raises many error types; all mean "not available here"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or local_files_only
        what = "is not in the local hub cache" if offline else "could not be downloaded"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{filename} of '{repo_id_or_dir}' {what} ({type(exc).__name__}: {reason}); download it where the "
            f"hub is reachable (huggingface-cli download {repo_id_or_dir}) and pass that directory, or run with "
            f"HF_HUB_OFFLINE=1 once it is cached") from None


class HubMixin:
    """from_pretrained / save_pretrained for modules built from a config dataclass."""

    config: Any  # TokenizerConfig or KronosConfig
    _name_kind = "model"  # which half of a named pair this class loads

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | os.PathLike, revision: str | None = None,
                        cache_dir: str | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, device: str | torch.device | None = None,
                        **config_overrides: Any):
        """Load from a local directory, a hub repo id, or a short name like 'kronos-small'."""
        source = str(repo_id_or_dir)
        if not Path(source).expanduser().is_dir() and "/" not in source:
            spec = resolve_spec(source)
            source = spec.tokenizer if cls._name_kind == "tokenizer" else spec.model
        config_path = _resolve_file(source, CONFIG_NAME, revision, cache_dir, local_files_only, token)
        weights_path = _resolve_file(source, WEIGHTS_NAME, revision, cache_dir, local_files_only, token)
        try:
            config = {**json.loads(config_path.read_text()), **config_overrides}
            module = cls(**config)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path} does not describe a {cls.__name__}: {exc}") from None
        load_state_strict(module, load_file(str(weights_path), device="cpu"), source)
        module.eval()
        return module.to(device) if device is not None else module


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`, refusing missing, unexpected or mis-shaped tensors by name."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise CheckpointError(f"checkpoint '{source}' does not fit {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
