"""Flip, crop and scale augmentation of cached training records, on the device, whole batch at once.

A record's fields are all per-pixel maps of the target (L, ground-truth ab, warped ab, cycle ab,
similarity), so one geometric transform applied to all of them is an exact augmentation of the pair:
mirroring the target and cropping it change what the network sees, not what the correspondence meant.
Random numbers come from torch's global generator, which checkpoints save, so resumed runs stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment"]


def augment(fields: dict[str, torch.Tensor], min_scale: float = 0.6, flip: float = 0.5) -> dict[str, torch.Tensor]:
    """Each sample mirrored with probability ``flip`` and cropped to a random square whose side is
    ``min_scale``..1 of the image's, resized back to the full size (bilinear): the same transform for every
    field of a sample.

    Args:
        fields: name -> ``(B, C, H, W)`` float tensors sharing ``B, H, W``.
    """
    first = next(iter(fields.values()))
    b, h, w = first.shape[0], first.shape[-2], first.shape[-1]
    dev = first.device
    side = min_scale + (1 - min_scale) * torch.rand(b, device="cpu")
    cx = (1 - side) * (2 * torch.rand(b) - 1)  # crop centre, normalised coordinates, crop stays inside
    cy = (1 - side) * (2 * torch.rand(b) - 1)
    mirror = torch.where(torch.rand(b) < flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side * mirror, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta.to(dev, first.dtype), [b, 1, h, w], align_corners=False)
    return {k: F.grid_sample(v, grid.to(v.dtype), mode="bilinear", padding_mode="border", align_corners=False)
            for k, v in fields.items()}
