"""Trained colorization sub-nets shipped inside the package (see ``MODEL_CARD.md`` beside this file).

``default.safetensors`` is what :class:`~exemplar_color.Colorizer` and ``exemplar-color colorize`` use
unless told otherwise; ``model="analogy"`` (or ``"none"``) selects the analogy head, a path a user's own
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "ANALOGY_NAMES", "resolve_model"]

DEFAULT_MODEL = Path(__file__).with_name("default.safetensors")
ANALOGY_NAMES = ("analogy", "none")


def resolve_model(model: str | os.PathLike | None) -> Path | None:
    """``"default"`` -> the shipped checkpoint; ``None``/``"analogy"``/``"none"`` -> ``None`` (analogy head);
    anything else is a checkpoint path."""
    if model is None or str(model).lower() in ANALOGY_NAMES:
        return None
    if str(model) == "default":
        return DEFAULT_MODEL
    return Path(model)
