"""The photos the pipeline reads: a :class:`Photo` (name, full-resolution pixels, whether it has colour),
and, in automatic mode, which of a gallery's recommendations are usable references."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ExemplarColorError, ImageError
from .io import ImageInput, as_array
from .layout import tensor_view
from .working import check_min_side, is_gray_array

__all__ = ["Photo", "read_photo", "GrayReferenceError", "check_reference", "read_reference", "usable_references",
           "AUTO_CANDIDATES"]

AUTO_CANDIDATES = 10  # automatic mode looks this far down the gallery's ranking for a usable reference


class GrayReferenceError(ImageError):
    """The reference has no colour to transfer."""


@dataclass
class Photo:
    """One input photo: its name, full-resolution pixels ``(1, C, H, W)`` (float32 in [0, 1], a view of the
    decoded array: channels-last strides for RGB) and whether it had colour."""

    name: str
    pixels: torch.Tensor
    colour: bool

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])  # type: ignore[return-value]


def read_photo(image: ImageInput) -> Photo:
    """A path, PIL image or array as a :class:`Photo` (too small a photo is refused)."""
    name = str(image) if isinstance(image, (str, os.PathLike)) else "<in-memory image>"
    arr = as_array(image, mode="auto")
    check_min_side(name, *arr.shape[:2])
    return Photo(name, tensor_view(arr), not is_gray_array(arr))  # no copy, colour judged on a sample


def check_reference(photo: Photo) -> Photo:
    """The one gray-reference rule: a reference must have colour to transfer (:class:`GrayReferenceError`)."""
    if not photo.colour:
        raise GrayReferenceError(photo.name, "the reference is grayscale: it has no colour to transfer; "
                                             "choose a colour photo of similar content")
    return photo


def read_reference(image: ImageInput | Photo) -> Photo:
    """A reference read as a :class:`Photo` (a Photo as it is), refused when it has no colour."""
    return check_reference(image if isinstance(image, Photo) else read_photo(image))


def usable_references(source: ImageInput, target: Photo, recs: list[Any], n: int,
                      ) -> tuple[list[Photo], list[tuple[str, str]]]:
    """The ``n`` best-ranked recommendations that are existing, readable colour photos and not the target itself
    (same file, same bytes, or the same pixels) (fewer when the ranking runs out, at least one or an
    error), and ``[(path, why)]`` of those passed over on the way. The colour original of a gray scan is
    a good reference, and is kept."""
    same_file, digest = None, None
    if isinstance(source, (str, os.PathLike)):
        same_file = os.path.realpath(source)
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    passed: list[tuple[str, str]] = []
    found: list[Photo] = []
    for rec in recs:
        if not os.path.isfile(rec.path):  # deleted or moved since the index was built
            passed.append((rec.path, "missing (gone since the index was built; `exemplar-color index add GALLERY "
                                     "--index INDEX --remove-missing` forgets it)"))
            continue
        if same_file is not None and os.path.realpath(rec.path) == same_file:
            passed.append((rec.path, "the target itself"))
            continue
        if digest is not None and hashlib.sha256(Path(rec.path).read_bytes()).hexdigest() == digest:
            passed.append((rec.path, "a copy of the target"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                photo = read_photo(rec.path)
        except ExemplarColorError as e:
            passed.append((rec.path, f"unreadable: {getattr(e, 'problem', e)}"))
            continue
        if not photo.colour:
            passed.append((rec.path, "grayscale"))
            continue
        if photo.size == target.size and photo.pixels.shape == target.pixels.shape and \
                float((photo.pixels - target.pixels).abs().mean()) < 2 / 255:
            passed.append((rec.path, "a near-duplicate of the target"))
            continue
        found.append(photo)
        if len(found) == n:
            break
    if found:
        return found, passed
    why = "; ".join(f"{Path(p).name}: {w}" for p, w in passed[:3])
    raise ExemplarColorError(f"{target.name}: none of the gallery's {len(recs)} best matches is a usable colour "
                             f"reference ({why}{'; ...' if len(passed) > 3 else ''}); give one with --reference")
