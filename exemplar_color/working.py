"""The working resolution: photos are matched and coloured at a short side of ``size`` (256 by default),
and only the predicted ab come back to full size, so the result keeps every pixel of the input's L."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .color import rgb_to_lab
from .errors import ImageTooSmallError

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


def is_gray(image: torch.Tensor, tolerance: float = 2.0) -> bool:
    """True when an image ``(1, C, H, W)`` has no colour: one channel, or RGB with (almost) no chroma (99% of
    pixels with |ab| below ``tolerance``), judged on at most ~250k pixels."""
    if image.shape[1] == 1:
        return True
    step = max(1, int(math.sqrt(image.shape[-2] * image.shape[-1] / 250_000)))
    ab = rgb_to_lab(image[..., ::step, ::step].float())[:, 1:]
    return bool(torch.quantile(ab.norm(dim=1).flatten(), 0.99) < tolerance)


def check_min_side(name: str, h: int, w: int, minimum: int = MULTIPLE) -> None:
    if min(h, w) < minimum:
        raise ImageTooSmallError(name, f"{w}x{h} is too small to colorize (short side at least {minimum} px)")
