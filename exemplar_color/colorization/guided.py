"""Guided filtering (He, Sun & Tang 2013): edge-aware smoothing and upsampling steered by the luminance.

Colours should change where the target's L changes and nowhere else. The guided filter fits, in every
window, ``out = A * L + b``; the coefficients are smooth, so they can be computed at the working size and
applied to the full-resolution L (the "fast guided filter"), which is how predicted ab reach full size
with sharp edges at a cost linear in the pixel count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (grid_sample below)


def _box_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Window sums along ``dim`` by a running sum: cost independent of the radius."""
    n = x.shape[dim]
    c = torch.cumsum(x, dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim)
    idx = torch.arange(n, device=x.device)
    hi = (idx + radius + 1).clamp(max=n)
    lo = (idx - radius).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over each ``(2r+1)^2`` window, shrinking at the borders, of ``(B, C, H, W)``; O(1) per pixel."""
    h, w = x.shape[-2:]
    ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
    count = _box_1d(_box_1d(ones, radius, -2), radius, -1)
    return _box_1d(_box_1d(x, radius, -2), radius, -1) / count


def coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel ``(A, b)`` of the local linear model ``src ≈ A * guide + b`` (gray guide ``(B, 1, H, W)``)."""
    mean_g = box(guide, radius)
    mean_s = box(src, radius)
    cov = box(guide * src, radius) - mean_g * mean_s
    var = box(guide * guide, radius) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_s - a * mean_g
    return box(a, radius), box(b, radius)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    a, b = coefficients(guide, src, radius, eps)
    return a * guide + b


def guided_upsample(guide_low: torch.Tensor, src_low: torch.Tensor, guide_high: torch.Tensor, radius: int = 2,
                    eps: float = 1e-4, chunk_rows: int = 512) -> torch.Tensor:
    """``src_low`` brought to ``guide_high``'s size, following its edges: coefficients fitted at low
    resolution, bilinearly upsampled, applied to the high-resolution guide in row chunks (bounded memory)."""
    a, b = coefficients(guide_low, src_low, radius, eps)
    h, w = guide_high.shape[-2:]
    if (h, w) == tuple(guide_low.shape[-2:]):
        return a * guide_high + b
    out = torch.empty(src_low.shape[0], src_low.shape[1], h, w, dtype=src_low.dtype, device=src_low.device)
    coeff = torch.cat([a, b], 1)
    hl = guide_low.shape[-2]
    for r0 in range(0, h, chunk_rows):
        r1 = min(h, r0 + chunk_rows)
        # rows r0..r1 of the output sample the low-res grid at y = (r + 0.5) * hl / h - 0.5
        ys = (torch.arange(r0, r1, device=src_low.device, dtype=torch.float32) + 0.5) * (hl / h) - 0.5
        xs = (torch.arange(w, device=src_low.device, dtype=torch.float32) + 0.5) * (guide_low.shape[-1] / w) - 0.5
        gy = ys * (2 / max(hl - 1, 1)) - 1
        gx = xs * (2 / max(guide_low.shape[-1] - 1, 1)) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).unsqueeze(0).expand(coeff.shape[0], -1, -1, -1)
        c = F.grid_sample(coeff, grid.to(coeff.dtype), mode="bilinear", padding_mode="border", align_corners=True)
        n = src_low.shape[1]
        out[:, :, r0:r1] = c[:, :n] * guide_high[:, :, r0:r1].to(coeff.dtype) + c[:, n:]
    return out


def joint_bilateral_upsample(guide_low: torch.Tensor, src_low: torch.Tensor, guide_high: torch.Tensor,
                             sigma: float = 0.1, chunk_rows: int = 512) -> torch.Tensor:
    """``src_low`` brought to ``guide_high``'s size by bilinear interpolation whose four taps are also
    weighted by how close their low-resolution guide value is to the full-resolution one (Kopf et al. 2007):
    plain bilinear in smooth regions, no colour bleeding across edges of the guide. Row chunks bound memory."""
    b, c, hl, wl = src_low.shape
    h, w = guide_high.shape[-2:]
    out = torch.empty(b, c, h, w, dtype=src_low.dtype, device=src_low.device)
    x = ((torch.arange(w, device=src_low.device, dtype=torch.float32) + 0.5) * (wl / w) - 0.5).clamp(0, wl - 1)
    x0 = x.floor().long().clamp(max=wl - 1)
    x1 = (x0 + 1).clamp(max=wl - 1)
    fx = (x - x0).to(src_low.dtype)
    for r0 in range(0, h, chunk_rows):
        r1 = min(h, r0 + chunk_rows)
        y = ((torch.arange(r0, r1, device=src_low.device, dtype=torch.float32) + 0.5) * (hl / h) - 0.5).clamp(0, hl - 1)
        y0 = y.floor().long().clamp(max=hl - 1)
        y1 = (y0 + 1).clamp(max=hl - 1)
        fy = (y - y0).to(src_low.dtype)[:, None]
        g = guide_high[:, :, r0:r1].to(src_low.dtype)
        num = torch.zeros(b, c, r1 - r0, w, dtype=src_low.dtype, device=src_low.device)
        den = torch.zeros(b, 1, r1 - r0, w, dtype=src_low.dtype, device=src_low.device)
        for yy, wy in ((y0, 1 - fy), (y1, fy)):
            for xx, wx in ((x0, 1 - fx), (x1, fx)):
                tap_g = guide_low[:, :, yy][:, :, :, xx]
                wgt = wy * wx * torch.exp(-0.5 * ((g - tap_g) / sigma) ** 2) + 1e-8
                num += wgt * src_low[:, :, yy][:, :, :, xx]
                den += wgt
        out[:, :, r0:r1] = num / den
    return out
