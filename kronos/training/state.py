"""Checkpoints of a training run, without pickle.

A run directory holds `last/` (the module in `save_pretrained` format plus the resumable
state: `training_state.safetensors` with the optimizer's tensors and `training_state.json`
with the step, schedule, best validation loss and the optimizer's other fields) and `best/`
(the module with the lowest validation loss). Directories are replaced atomically, so an
interrupted save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import TrainingStateError

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
STATE_VERSION = 1


def optimizer_state_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and JSON-able fields."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, fields in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(fields)
    return {"state": state, "param_groups": meta["param_groups"]}


def _replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    state: dict[str, Any] | None = None, extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `module` (save_pretrained format) and, with an optimizer, the resumable state."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    module.save_pretrained(tmp)
    if optimizer is not None:
        tensors, meta = optimizer_state_to_flat(optimizer)
        tensors.update(extra_tensors or {})
        save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": "kronos-training-state"})
        payload = {"version": STATE_VERSION, **(state or {}), "optimizer": meta}
        (tmp / STATE_JSON).write_text(json.dumps(payload, indent=2))
    _replace_dir(tmp, directory)
    return directory


def has_state(directory: Path) -> bool:
    return (Path(directory) / STATE_JSON).is_file()


def load_state(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read `training_state.json` and its tensors from a `last/` directory."""
    directory = Path(directory)
    json_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise TrainingStateError(f"{json_path} not found: nothing to resume") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingStateError(f"{json_path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION or "optimizer" not in meta:
        raise TrainingStateError(f"{json_path} is not a version-{STATE_VERSION} training state")
    try:
        tensors = load_file(str(tensor_path), device="cpu")
    except FileNotFoundError:
        raise TrainingStateError(f"{tensor_path} not found") from None
    except (OSError, SafetensorError, ValueError) as exc:
        raise TrainingStateError(f"{tensor_path} is unreadable ({type(exc).__name__}: {exc})") from None
    return meta, tensors
