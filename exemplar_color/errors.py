"""The library's typed errors: each names the file (when there is one) and the problem in one line."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "ExemplarColorError",
    "ImageError",
    "ImageNotFoundError",
    "NotAnImageError",
    "CorruptImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "WeightsError",
    "ConfigMismatchError",
    "UsageError",
    "OutputError",
    "without_unsafe_advice",
]

# Advice some libraries attach to their errors that a user must not follow (torch: "re-run with
# weights_only=False", i.e. unpickle an untrusted file): a message is cut where it starts.
_UNSAFE_ADVICE = re.compile(r"(?i)weights.only|this file can still be loaded|arbitrary code")


def without_unsafe_advice(message: object) -> str:
    """A message as one line, cut before any advice to load a file unsafely."""
    text = " ".join(str(message).split())
    m = _UNSAFE_ADVICE.search(text)
    if m:
        text = text[:m.start()].rstrip(" ,;:.(")
        text += ")" * max(0, text.count("(") - text.count(")"))
    return text


class ExemplarColorError(Exception):
    """Base class of every error this library raises on purpose; the CLI prints it as one line and exits
    with ``exit_code`` (1: the environment or the data; 2: a usage mistake)."""

    exit_code = 1


class UsageError(ExemplarColorError, ValueError):
    """A mistake in what was asked (arguments, output names that collide or would overwrite an input):
    found before any work starts; the CLI exits 2."""

    exit_code = 2


class OutputError(ExemplarColorError, OSError):
    """An output location cannot be written (read-only, not creatable); the CLI exits 1."""


class ImageError(ExemplarColorError, ValueError):
    """An image could not be used. ``path`` names it (or ``<array>`` for in-memory input)."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else "<in-memory image>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The file does not exist or is not a regular file."""


class NotAnImageError(ImageError):
    """The file exists but is not in an image format we can read."""


class CorruptImageError(ImageError):
    """The header was readable but the pixel data is truncated or damaged."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (guards against decompression bombs)."""


class ImageTooSmallError(ImageError):
    """The image is smaller than the pipeline can process."""


class WeightsError(ExemplarColorError, RuntimeError):
    """Network weights are missing, corrupt, or do not cover what was asked for."""


class ConfigMismatchError(ExemplarColorError, ValueError):
    """An artefact (checkpoint, cache, index) was built with a different configuration than requested."""
