"""Guided filtering (He, Sun & Tang 2013): edge-aware smoothing and upsampling steered by the luminance.

Colours should change where the target's L changes and nowhere else. The guided filter fits, in every
window, ``out = A * L + b``; the coefficients are smooth, so they can be computed at the working size and
applied to the full-resolution L (the "fast guided filter"), which is how predicted ab reach full size
with sharp edges at a cost linear in the pixel count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def guided_coefficients(guide_low: torch.Tensor, src_low: torch.Tensor, radius: int = 2, eps: float = 1e-4,
                        ) -> torch.Tensor:
    """``(B, 2C, h, w)``: the smoothed ``A`` then ``b`` of the fast guided filter, fitted at low resolution."""
    return torch.cat(coefficients(guide_low, src_low, radius, eps), 1)


def guided_rows(coeff: torch.Tensor, guide_rows: torch.Tensor, r0: int, h: int) -> torch.Tensor:
    """Rows ``r0 .. r0 + n`` of the fast guided upsampling to height ``h``: the low-resolution coefficients
    (:func:`guided_coefficients`) read bilinearly at those rows, applied to the full-resolution guide's rows
    ``guide_rows`` ``(B, 1, n, W)``. Each row depends only on its own position: any split into bands is exact."""
    hl, wl = coeff.shape[-2:]
    r1, w = r0 + guide_rows.shape[-2], guide_rows.shape[-1]
    n = coeff.shape[1] // 2
    if (h, w) == (hl, wl):
        c = coeff[..., r0:r1, :]
    else:  # rows r0..r1 of the output sample the low-res grid at y = (r + 0.5) * hl / h - 0.5
        ys = (torch.arange(r0, r1, device=coeff.device, dtype=torch.float32) + 0.5) * (hl / h) - 0.5
        xs = (torch.arange(w, device=coeff.device, dtype=torch.float32) + 0.5) * (wl / w) - 0.5
        gy = ys * (2 / max(hl - 1, 1)) - 1
        gx = xs * (2 / max(wl - 1, 1)) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).unsqueeze(0).expand(coeff.shape[0], -1, -1, -1)
        c = F.grid_sample(coeff, grid.to(coeff.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return c[:, :n] * guide_rows.to(coeff.dtype) + c[:, n:]


def guided_upsample(guide_low: torch.Tensor, src_low: torch.Tensor, guide_high: torch.Tensor, radius: int = 2,
                    eps: float = 1e-4, chunk_rows: int = 512) -> torch.Tensor:
    """``src_low`` brought to ``guide_high``'s size, following its edges: coefficients fitted at low
    resolution, bilinearly upsampled, applied to the high-resolution guide in row chunks."""
    coeff = guided_coefficients(guide_low, src_low, radius, eps)
    return _by_rows(lambda r0, r1: guided_rows(coeff, guide_high[:, :, r0:r1], r0, guide_high.shape[-2]),
                    src_low, guide_high, chunk_rows)


def _by_rows(rows, src_low: torch.Tensor, guide_high: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """The whole upsampled image, filled by ``rows(r0, r1)`` a chunk at a time."""
    h, w = guide_high.shape[-2:]
    out = torch.empty(src_low.shape[0], src_low.shape[1], h, w, dtype=src_low.dtype, device=src_low.device)
    for r0 in range(0, h, chunk_rows):
        out[:, :, r0:r0 + chunk_rows] = rows(r0, min(h, r0 + chunk_rows))
    return out


def _taps(n_low: int, start: int, stop: int, n: int, device: torch.device,
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions ``start .. stop`` of an axis of ``n`` read on one of ``n_low`` (pixel centres aligned, as
    ``F.interpolate(align_corners=False)``): the two neighbours and the second one's weight."""
    x = ((torch.arange(start, stop, device=device, dtype=torch.float32) + 0.5) * (n_low / n) - 0.5).clamp(0, n_low - 1)
    i0 = x.floor().long().clamp(max=n_low - 1)
    return i0, (i0 + 1).clamp(max=n_low - 1), x - i0


def bilinear_rows(src_low: torch.Tensor, r0: int, r1: int, h: int, w: int) -> torch.Tensor:
    """Rows ``r0 .. r1`` of ``src_low`` ``(B, C, h', w')`` bilinearly resized to ``(h, w)`` (what
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` gives, to float rounding), without the rest."""
    hl, wl = src_low.shape[-2:]
    y0, y1, fy = _taps(hl, r0, r1, h, src_low.device)
    x0, x1, fx = _taps(wl, 0, w, w, src_low.device)
    fy, fx = fy.to(src_low.dtype)[:, None], fx.to(src_low.dtype)
    top, bottom = src_low[:, :, y0], src_low[:, :, y1]
    return ((1 - fy) * ((1 - fx) * top[..., x0] + fx * top[..., x1])
            + fy * ((1 - fx) * bottom[..., x0] + fx * bottom[..., x1]))


def joint_bilateral_rows(guide_low: torch.Tensor, src_low: torch.Tensor, guide_rows: torch.Tensor, r0: int, h: int,
                         sigma: float = 0.1) -> torch.Tensor:
    """Rows ``r0 .. r0 + n`` of the joint bilateral upsampling of ``src_low`` to height ``h``, guided by those
    rows of the full-resolution guide, ``guide_rows`` ``(B, 1, n, W)`` (see :func:`joint_bilateral_upsample`).
    Each row depends only on its own position: any split into bands is exact."""
    b, c, hl, wl = src_low.shape
    r1, w = r0 + guide_rows.shape[-2], guide_rows.shape[-1]
    x0, x1, fx = _taps(wl, 0, w, w, src_low.device)
    y0, y1, fy = _taps(hl, r0, r1, h, src_low.device)
    fx, fy = fx.to(src_low.dtype), fy.to(src_low.dtype)[:, None]
    g = guide_rows.to(src_low.dtype)
    num = torch.zeros(b, c, r1 - r0, w, dtype=src_low.dtype, device=src_low.device)
    den = torch.zeros(b, 1, r1 - r0, w, dtype=src_low.dtype, device=src_low.device)
    for yy, wy in ((y0, 1 - fy), (y1, fy)):
        for xx, wx in ((x0, 1 - fx), (x1, fx)):
            tap_g = guide_low[:, :, yy][:, :, :, xx]
            wgt = wy * wx * torch.exp(-0.5 * ((g - tap_g) / sigma) ** 2) + 1e-8
            num += wgt * src_low[:, :, yy][:, :, :, xx]
            den += wgt
    return num / den


def joint_bilateral_upsample(guide_low: torch.Tensor, src_low: torch.Tensor, guide_high: torch.Tensor,
                             sigma: float = 0.1, chunk_rows: int = 512) -> torch.Tensor:
    """``src_low`` brought to ``guide_high``'s size by bilinear interpolation whose four taps are also
    weighted by how close their low-resolution guide value is to the full-resolution one (Kopf et al. 2007):
    plain bilinear in smooth regions, no colour bleeding across edges of the guide. Row chunks bound memory."""
    return _by_rows(lambda r0, r1: joint_bilateral_rows(guide_low, src_low, guide_high[:, :, r0:r1], r0,
                                                        guide_high.shape[-2], sigma), src_low, guide_high, chunk_rows)
