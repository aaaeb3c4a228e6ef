"""The photos the pipeline reads: a :class:`Photo` (name, full-resolution pixels, its Lab at the working size,
whether it has colour), and the one gray-reference rule."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .color import is_gray_lab
from .constants import WORKING_SIZE
from .errors import ImageError
from .io import ImageInput, as_array
from .layout import tensor_view
from .working import to_working, working_size

__all__ = ["Photo", "read_photo", "GrayReferenceError", "check_reference", "read_reference"]


class GrayReferenceError(ImageError):
    """The reference has no colour to transfer."""


@dataclass
class Photo:
    """One input photo: its name, full-resolution pixels ``(1, C, H, W)`` (float32 in [0, 1], a view of the
    decoded array: channels-last strides for RGB), its Lab ``(1, 3, h, w)`` at the working size it was read
    for (what is matched and coloured), and whether it has colour (judged on that Lab)."""

    name: str
    pixels: torch.Tensor
    lab: torch.Tensor
    colour: bool

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])  # type: ignore[return-value]


def read_photo(image: ImageInput | Photo, size: int = WORKING_SIZE, device: torch.device | str = "cpu") -> Photo:
    """A path, PIL image or array as a :class:`Photo` with its Lab at working size ``size`` on ``device``
    (too small a photo is refused by :func:`~exemplar_color.io.as_array`); a Photo read before comes back as it is, its Lab remade only when it was
    read for another working size. Read once, converted once: the colour judgement reads the working Lab."""
    if isinstance(image, Photo):
        name, pixels, lab = image.name, image.pixels, image.lab
    else:
        name = str(image) if isinstance(image, (str, os.PathLike)) else "<in-memory image>"
        arr = as_array(image, mode="auto")
        pixels, lab = tensor_view(arr), None  # no copy
    if lab is None or tuple(lab.shape[-2:]) != working_size(*pixels.shape[-2:], size):
        lab = to_working(pixels, size, device)
    lab = lab.to(device)
    if isinstance(image, Photo):
        return image if lab is image.lab else Photo(name, pixels, lab, image.colour)
    return Photo(name, pixels, lab, pixels.shape[1] == 3 and not is_gray_lab(lab))


def check_reference(photo: Photo) -> Photo:
    """The one gray-reference rule: a reference must have colour to transfer (:class:`GrayReferenceError`)."""
    if not photo.colour:
        raise GrayReferenceError(photo.name, "the reference is grayscale: it has no colour to transfer; "
                                             "choose a colour photo of similar content")
    return photo


def read_reference(image: ImageInput | Photo, size: int = WORKING_SIZE, device: torch.device | str = "cpu") -> Photo:
    """A reference read as a :class:`Photo` (:func:`read_photo`), refused when it has no colour."""
    return check_reference(read_photo(image, size, device))
