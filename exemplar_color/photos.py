"""The photos the pipeline reads: a :class:`Photo` (name, full-resolution pixels, whether it has colour), and
the one gray-reference rule."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ImageError
from .io import ImageInput, as_array
from .layout import tensor_view
from .working import check_min_side, is_gray

__all__ = ["Photo", "read_photo", "GrayReferenceError", "check_reference", "read_reference"]


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
    pixels = tensor_view(arr)  # no copy
    return Photo(name, pixels, not is_gray(pixels))


def check_reference(photo: Photo) -> Photo:
    """The one gray-reference rule: a reference must have colour to transfer (:class:`GrayReferenceError`)."""
    if not photo.colour:
        raise GrayReferenceError(photo.name, "the reference is grayscale: it has no colour to transfer; "
                                             "choose a colour photo of similar content")
    return photo


def read_reference(image: ImageInput | Photo) -> Photo:
    """A reference read as a :class:`Photo` (a Photo as it is), refused when it has no colour."""
    return check_reference(image if isinstance(image, Photo) else read_photo(image))
