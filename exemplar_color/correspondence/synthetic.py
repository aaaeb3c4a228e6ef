"""Pairs with a known correspondence: a photo and a randomly transformed copy of it.

Used by the known-transform quality tests, by ``evaluate --reference-mode self-transform`` and by the
benchmarks: the truth field says where every pixel of the original lies in the copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KnownPair:
    """``reference`` = ``image`` under ``matrix``; ``truth`` ``(B, 2, H, W)``: where each original pixel lies
    in the reference (x, y); ``overlap`` ``(B, 1, H, W)``: pixels whose truth lies inside the reference."""

    reference: torch.Tensor
    truth: torch.Tensor
    overlap: torch.Tensor
    matrix: torch.Tensor


def random_similarity(generator: torch.Generator, max_rotation: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
                      max_shift: float = 0.08) -> tuple[float, float, float, float]:
    """(angle in degrees, scale, shift x, shift y as fractions of the size), uniform in the given ranges."""
    u = torch.rand(4, generator=generator).tolist()
    return ((2 * u[0] - 1) * max_rotation, scale[0] + u[1] * (scale[1] - scale[0]),
            (2 * u[2] - 1) * max_shift, (2 * u[3] - 1) * max_shift)


def similarity_pair(image: torch.Tensor, angle: float, scale: float, shift_x: float, shift_y: float) -> KnownPair:
    """Transform ``image`` ``(B, C, H, W)`` about its centre: rotate by ``angle``, scale, then shift."""
    b, _, h, w = image.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(angle)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64) * scale
    shift = torch.tensor([shift_x * w, shift_y * h], dtype=torch.float64)
    # forward map (original pixel p -> reference position): q = R (p - c) + c + t
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    p = torch.stack((xs - cx, ys - cy), 0).view(2, -1)
    centre = torch.tensor([[cx], [cy]], dtype=torch.float64)
    truth = (rot @ p + centre + shift.view(2, 1)).view(2, h, w)
    # the reference is sampled through the inverse map: p = R^-1 (q - c - t) + c
    src = (torch.linalg.inv(rot) @ (p - shift.view(2, 1)) + centre).view(2, h, w)
    grid = torch.stack((src[0] * 2 / (w - 1) - 1, src[1] * 2 / (h - 1) - 1), -1).float()
    reference = F.grid_sample(image.float(), grid.unsqueeze(0).expand(b, -1, -1, -1), mode="bilinear",
                              padding_mode="reflection", align_corners=True)
    inside = (truth[0] >= 0) & (truth[0] <= w - 1) & (truth[1] >= 0) & (truth[1] <= h - 1)
    matrix = torch.cat([rot, (centre.view(2) + shift - rot @ centre.view(2)).view(2, 1)], 1)
    return KnownPair(reference, truth.float().unsqueeze(0).expand(b, -1, -1, -1).contiguous(),
                     inside.view(1, 1, h, w).expand(b, -1, -1, -1).contiguous(), matrix.float())
