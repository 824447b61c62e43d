"""Exceptions raised by the store."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A one-line, password-free error about the database or a stored object."""
