"""Training images at the working size: short side resized (antialiased), centre-cropped square.

Training sees square crops so that records stack into fixed-shape HDF5 datasets and batches.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..layout import to_tensor
from ..io import load_image

__all__ = ["load_square", "square"]


def square(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, size, size)``: resize the short side to ``size``, crop the centre."""
    h, w = img.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[:, top:top + size, left:left + size].clamp(0, 1).contiguous()


def load_square(path: str | os.PathLike, size: int) -> tuple[torch.Tensor, bool]:
    """An image file as ``(3, size, size)`` sRGB in [0, 1], and whether the file is grayscale.

    Raises the :class:`~exemplar_color.errors.ImageError` family for missing or corrupt files.
    """
    arr = load_image(path, mode="auto")
    gray = arr.ndim == 2
    return square(to_tensor(arr)[0].expand(3, -1, -1), size), gray
