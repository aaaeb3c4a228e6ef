"""Flip, crop and scale augmentation of cached training records, on the device, whole batch at once.

Records that carry features of the target (the hypercolumn sub-net's input) can only be mirrored, and only
with the features of the mirrored photo stored beside them (:func:`mirror`): VGG-19 is not mirror-symmetric,
so flipped feature maps are not the flipped photo's features.

A record's fields are all per-pixel maps of the target (L, ground-truth ab, warped ab, cycle ab,
similarity), so one geometric transform applied to all of them is an exact augmentation of the pair:
mirroring the target and cropping it change what the network sees, not what the correspondence meant.
Random numbers come from torch's global generator, which checkpoints save, so resumed runs stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment", "mirror"]


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


def mirror(fields: dict[str, torch.Tensor], prefix: str, p: float = 0.5) -> dict[str, torch.Tensor]:
    """Each sample mirrored left-right with probability ``p``: every field flipped, except those with a
    ``prefix + name`` counterpart (the mirrored photo's own features), which take it instead. The
    counterparts are dropped from the result.

    Args:
        fields: name -> ``(B, C, H, W)`` tensors sharing ``B`` (any dtype).
    """
    first = next(iter(fields.values()))
    flip = torch.rand(first.shape[0]) < p
    out = {}
    for name, v in fields.items():
        if name.startswith(prefix):
            continue
        mirrored = fields.get(prefix + name)
        alt = v.flip(-1) if mirrored is None else mirrored
        out[name] = torch.where(flip.to(v.device).view(-1, *([1] * (v.dim() - 1))), alt, v)
    return out
