"""One-line errors for training problems (all are `ValueError`s)."""
from __future__ import annotations


class TrainingError(ValueError):
    """A training run cannot start or continue; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class TrainingDataError(TrainingError):
    """The training data is empty, too short for one window, or leaves validation empty."""


class TrainingConfigError(TrainingError):
    """Settings or checkpoints do not fit together (e.g. tokenizer/model bits differ)."""


class TrainingStateError(TrainingError):
    """A checkpoint or resumable training state is missing, unreadable or inconsistent."""
