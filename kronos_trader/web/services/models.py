"""Which models the workbench offers and how a choice becomes a loaded predictor.

Choices are bundled pairs, the Hugging Face hub names and pair directories from the
`web.model_dirs` allow-list (each entry a pair directory or a folder of them). The browser
sends only a choice id; paths are never taken from a request, so no traversal is possible,
and none is shown (labels name the directory only, not where it lies on the server).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from kronos.hub import BUNDLED_DIR, HUB_MODELS, PAIR_FILE, CheckpointError, resolve_spec
from kronos_trader.text import one_line

from ..errors import WebError


@dataclass(frozen=True)
class ModelChoice:
    id: str
    label: str
    kind: str  # bundled | hub | local
    load_name: str
    max_context: int
    note: str = ""

    @property
    def short_name(self) -> str:
        return Path(self.load_name).name if self.kind == "local" else self.id

    def public(self) -> dict:
        d = asdict(self)
        d.pop("load_name")
        return d


def _is_pair(directory: Path) -> bool:
    return (directory / "model").is_dir() and (directory / "tokenizer").is_dir()


def _context(directory: Path) -> int:
    try:
        return int(resolve_spec(str(directory)).max_context)
    except (CheckpointError, ValueError, OSError):
        return 512


def _hub_cached(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # an odd cache must not break the model list
        return False


def model_choices(model_dirs: list[Path], default: str | None = None) -> list[ModelChoice]:
    out: list[ModelChoice] = []
    if BUNDLED_DIR.is_dir():
        for p in sorted(BUNDLED_DIR.iterdir()):
            if p.is_dir() and _is_pair(p):
                out.append(ModelChoice(p.name, f"{p.name} (bundled)", "bundled", p.name, _context(p)))
    for i, entry in enumerate(model_dirs):
        root = Path(entry).expanduser()
        try:
            root = root.resolve()
        except OSError:
            continue
        if _is_pair(root):
            out.append(ModelChoice(f"local:{i}", f"{root.name} (local)", "local", str(root), _context(root)))
        elif root.is_dir():
            for child in sorted(root.iterdir()):
                try:
                    real = child.resolve()
                except OSError:
                    continue
                if real.is_dir() and real.is_relative_to(root) and _is_pair(real):
                    out.append(ModelChoice(f"local:{i}:{child.name}", f"{child.name} (local)", "local", str(real),
                                           _context(real)))
    for name, spec in HUB_MODELS.items():
        cached = _hub_cached(spec.model) and _hub_cached(spec.tokenizer)
        note = "in the local hub cache" if cached else "downloads from the Hugging Face hub (needs internet)"
        out.append(ModelChoice(name, f"{name} (hub)", "hub", name, spec.max_context, note))
    if default:
        out.sort(key=lambda c: (c.load_name != default and c.id != default))
    return out


def find_choice(choices: list[ModelChoice], choice_id: str) -> ModelChoice:
    for c in choices:
        if c.id == choice_id:
            return c
    known = ", ".join(c.id for c in choices) or "none"
    raise WebError(422, f"unknown model '{choice_id}'; choose one of: {known}")


def device_choices() -> list[str]:
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def load_error_message(choice: ModelChoice, exc: BaseException) -> str:
    """A clear one-line reason a model could not be loaded."""
    text = one_line(exc, 400)
    if choice.kind == "hub":
        return (f"{choice.id} could not be loaded from the Hugging Face hub (it is not cached here and the hub "
                f"is unreachable): {text}. Pick the bundled model or an allow-listed local directory.")
    return f"{choice.label} could not be loaded: {text}"


Loader = Callable[[str, str], object]  # (load_name, device) -> LoadedModel


def default_loader(name: str, device: str, precision: str = "float32"):
    from kronos_trader.forecasting.models import load_model

    return load_model(name, device, None, precision)


__all__ = ["ModelChoice", "model_choices", "find_choice", "device_choices", "load_error_message", "default_loader",
           "PAIR_FILE"]
