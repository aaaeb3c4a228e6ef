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


def colours_alone(model: str | os.PathLike | None) -> bool:
    """Whether ``model`` can colour a photo with no reference (a hypercolumn checkpoint); reads only the
    checkpoint's header, so a command can decide before loading anything."""
    from ..colorization.checkpoint import read_metadata
    from ..colorization.hypercolumn import ARCH

    path = resolve_model(model)
    return path is not None and path.is_file() and read_metadata(path)["config"].get("arch") == ARCH
