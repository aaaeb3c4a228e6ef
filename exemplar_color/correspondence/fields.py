"""Correspondence fields: integer (x, y) maps between feature grids, and the sampling they drive.

A field ``phi`` of shape ``(B, 2, H, W)`` gives, for each pixel of the source grid, the ``(x, y)`` position
of its match in the destination grid (channel 0 = x = column, channel 1 = y = row; pixel centres at integers).
All functions here are whole-tensor operations over every pixel of every image in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_field(b: int, h: int, w: int, dst_h: int, dst_w: int, device: torch.device) -> torch.Tensor:
    """The scaled identity (PatchMatch's start at the coarsest level): pixel ``p`` maps to ``p`` rescaled."""
    ys = torch.arange(h, device=device, dtype=torch.float32) * ((dst_h - 1) / max(h - 1, 1))
    xs = torch.arange(w, device=device, dtype=torch.float32) * ((dst_w - 1) / max(w - 1, 1))
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).round().long()
    return grid.unsqueeze(0).expand(b, -1, -1, -1).contiguous()


def clamp_field(phi: torch.Tensor, dst_h: int, dst_w: int) -> torch.Tensor:
    """Keep matches inside the destination grid."""
    return torch.stack((phi[:, 0].clamp(0, dst_w - 1), phi[:, 1].clamp(0, dst_h - 1)), 1)


def upsample_field(phi: torch.Tensor, h: int, w: int, dst_h: int, dst_w: int) -> torch.Tensor:
    """Parent field (coarser level, half size) -> child field: each child takes its parent's match,
    scaled by 2, plus its own position inside the parent (so a translation stays exact), clamped."""
    b = phi.shape[0]
    ys = torch.arange(h, device=phi.device)
    xs = torch.arange(w, device=phi.device)
    py = (ys // 2).clamp(max=phi.shape[2] - 1)
    px = (xs // 2).clamp(max=phi.shape[3] - 1)
    parent = phi[:, :, py][:, :, :, px]
    sub = torch.stack(torch.meshgrid(xs - 2 * px, ys - 2 * py, indexing="xy"), 0)
    child = parent * 2 + sub.unsqueeze(0)
    return clamp_field(child.expand(b, -1, -1, -1), dst_h, dst_w)


def flat_index(phi: torch.Tensor, dst_h: int, dst_w: int) -> torch.Tensor:
    """Rows of the batch-flattened destination ``(B * dst_h * dst_w, C)`` that ``phi`` points at."""
    b = phi.shape[0]
    base = torch.arange(b, device=phi.device).view(b, 1, 1) * (dst_h * dst_w)
    return (base + phi[:, 1] * dst_w + phi[:, 0]).reshape(-1)


def rows(feat: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B * H * W, C)``: one contiguous row per pixel, so a gather copies whole rows."""
    return feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1]).contiguous()


def gather_cosine(src_rows: torch.Tensor, dst_rows: torch.Tensor, phi: torch.Tensor,
                  dst_h: int, dst_w: int) -> torch.Tensor:
    """Per-pixel cosine ``<F_src(p), F_dst(phi(p))>`` of unit features, ``(B, H, W)``."""
    b, _, h, w = phi.shape
    matched = dst_rows.index_select(0, flat_index(phi, dst_h, dst_w))
    return torch.einsum("nc,nc->n", src_rows, matched).view(b, h, w)


def compose(phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """``psi(phi(p))``: follow ``phi`` then ``psi`` (both integer fields)."""
    b, _, h, w = phi.shape
    idx = phi[:, 1] * psi.shape[3] + phi[:, 0]
    return torch.gather(psi.flatten(2), 2, idx.view(b, 1, -1).expand(-1, 2, -1)).view(b, 2, h, w)


def to_pixels(phi: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    """Integer field on a grid of the given ``stride`` -> float field in working-resolution pixels,
    sampled at every pixel of an ``(h, w)`` image (bilinear between grid centres)."""
    coords = phi.float() * stride + (stride - 1) / 2.0
    if stride == 1 and coords.shape[-2:] == (h, w):
        return coords
    return F.interpolate(coords, size=(h, w), mode="bilinear", align_corners=False)


def resize_field(field: torch.Tensor, h: int, w: int, scale_x: float, scale_y: float) -> torch.Tensor:
    """A float pixel field resampled to an ``(h, w)`` grid with its values rescaled to another image size
    (pixel centres at integers: ``x' = (x + 0.5) * scale - 0.5``)."""
    out = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False) if field.shape[-2:] != (h, w) \
        else field
    sx = torch.tensor([scale_x, scale_y], device=field.device, dtype=field.dtype).view(1, 2, 1, 1)
    return (out + 0.5) * sx - 0.5


def sample(image: torch.Tensor, field: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``image`` ``(B, C, H2, W2)`` read at the float pixel positions of ``field`` ``(B, 2, H, W)``."""
    h2, w2 = image.shape[-2:]
    gx = field[:, 0] * (2.0 / max(w2 - 1, 1)) - 1.0
    gy = field[:, 1] * (2.0 / max(h2 - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), -1).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def vote(image: torch.Tensor, field: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Warp with patch voting (as published): each pixel averages the values that the matches of its
    ``(2r+1)^2`` neighbours propose for it (neighbour ``n`` matched at ``phi(n)`` proposes ``phi(n) + p - n``)."""
    _, _, h, w = field.shape
    padded = F.pad(field, (radius,) * 4, mode="replicate")
    total = torch.zeros(image.shape[0], image.shape[1], h, w, device=image.device, dtype=image.dtype)
    k = 2 * radius + 1
    for dy in range(k):
        for dx in range(k):
            neighbour = padded[:, :, dy:dy + h, dx:dx + w]
            offset = torch.tensor([radius - dx, radius - dy], device=field.device, dtype=field.dtype)
            total += sample(image, neighbour + offset.view(1, 2, 1, 1))
    return total / (k * k)
