"""The working resolution: photos are matched and coloured at a short side of ``size`` (256 by default),
and only the predicted ab come back to full size, so the result keeps every pixel of the input's L."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .color import gray_to_l, is_gray_lab, rgb_to_lab
from .constants import WORKING_SIZE

MULTIPLE = 16  # VGG-19's relu5_1 has stride 16: sides that divide evenly keep every level aligned


MAX_ASPECT = 4  # the long side is capped at this many times ``size``: a panorama must not cost a quadratic search


def working_size(h: int, w: int, size: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """``(h, w)`` scaled so the short side is ``size`` (the long side at most ``MAX_ASPECT * size``), each side
    rounded to a multiple of ``multiple`` and at least two of them (the coarsest level needs 2 pixels)."""
    if size < 2 * multiple:
        raise ValueError(f"working size {size} is too small; use at least {2 * multiple}")
    scale = min(size / min(h, w), MAX_ASPECT * size / max(h, w))
    return (max(2 * multiple, round(h * scale / multiple) * multiple),
            max(2 * multiple, round(w * scale / multiple) * multiple))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of ``(B, C, H, W)`` (antialiasing matters when shrinking a big photo)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def to_working(pixels: torch.Tensor, size: int = WORKING_SIZE, device: torch.device | str = "cpu") -> torch.Tensor:
    """A photo's pixels ``(1, C, H, W)`` in [0, 1] as Lab ``(1, 3, h, w)`` at the working size on ``device``
    (one channel: its L, ab zero)."""
    t = resize(pixels.to(device), working_size(*pixels.shape[-2:], size)).clamp(0, 1)
    if t.shape[1] == 3:
        return rgb_to_lab(t)
    lightness = gray_to_l(t)
    return torch.cat([lightness, torch.zeros_like(lightness).expand(-1, 2, -1, -1)], 1)


def is_gray(image: torch.Tensor) -> bool:
    """True when an image ``(1, C, H, W)`` has no colour: one channel, or RGB that
    :func:`~exemplar_color.color.is_gray_lab` judges gray, on at most ~250k of its pixels."""
    if image.shape[1] == 1:
        return True
    step = max(1, int(math.sqrt(image.shape[-2] * image.shape[-1] / 250_000)))
    return is_gray_lab(rgb_to_lab(image[..., ::step, ::step].float()))
