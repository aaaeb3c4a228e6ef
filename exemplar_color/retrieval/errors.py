"""Typed errors of the retrieval package (all :class:`~exemplar_color.errors.ExemplarColorError`)."""

from __future__ import annotations

from ..errors import ConfigMismatchError, ExemplarColorError

__all__ = ["GalleryIndexError", "EmptyGalleryError", "IndexMismatchError", "IndexNotFoundError",
           "PartialBuildError"]


class GalleryIndexError(ExemplarColorError, RuntimeError):
    """A gallery index is missing, incomplete or damaged."""


class IndexNotFoundError(GalleryIndexError, FileNotFoundError):
    """No (complete) index at the given path."""


class EmptyGalleryError(GalleryIndexError, ValueError):
    """The gallery folder holds no usable images."""


class PartialBuildError(GalleryIndexError):
    """A build was interrupted here; continue it with ``resume=True`` (``--resume``) or start over."""


class IndexMismatchError(ConfigMismatchError):
    """The index was built with another backbone, level, descriptor or weight file than the one asked for."""
