"""Patch search at one feature level: three ways to find, for every source pixel, its best patch match.

Features are unit vectors per pixel, so the dot product is the cosine and the patch score is the mean
cosine over a ``patch x patch`` window (the published distance is its negative).

- :func:`exact_search`: the whole similarity volume by one matrix product, summed along its diagonals into
  patch scores; the exact best match, in both directions at once. Quadratic in the map size: for coarse levels.
- :func:`local_search`: every candidate within ``radius`` of the inherited field, one vectorised pass per
  offset. Per-pixel scores are box-filtered, i.e. a pixel's patch is scored with its neighbours' matches
  shifted by the same offset: exact where the field is locally a translation (what coarse-to-fine gives).
- :func:`patchmatch`: the published reference (jump-flood propagation + random search, exact patch score).

After a search, :func:`coherence_fill` and :func:`prefer_coherent` settle what patch scores cannot tell apart
(flat areas, repeated textures) by the motion of the surrounding matches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fields import clamp_field, compose, flat_index, gather_cosine, rows

VOLUME_BUDGET = 2 ** 26  # similarity-volume elements per image (256 MB) up to which a whole-map search is exact


def _patch_mean(score: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean of a per-pixel score ``(B, H, W)`` over each ``patch x patch`` window (valid pixels only)."""
    return F.avg_pool2d(score.unsqueeze(1), patch, stride=1, padding=patch // 2,
                        count_include_pad=False).squeeze(1)


def _window_mask(phi: torch.Tensor, dst_h: int, dst_w: int, radius: int | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, dst_h, dst_w)`` True where a destination pixel lies within ``radius`` of ``phi(p)``."""
    ys = torch.arange(dst_h, device=phi.device).view(1, 1, 1, dst_h, 1)
    xs = torch.arange(dst_w, device=phi.device).view(1, 1, 1, 1, dst_w)
    if isinstance(radius, torch.Tensor):
        radius = radius.view(1, *radius.shape, 1, 1)
    return ((ys - phi[:, 1, :, :, None, None]).abs() <= radius) & \
        ((xs - phi[:, 0, :, :, None, None]).abs() <= radius)


def exact_search(ft: torch.Tensor, fr: torch.Tensor, patch: int,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 radius: int | tuple[torch.Tensor, torch.Tensor] | None = None,
                 position_prior: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best patch match in both directions, ``(phi: T->R, psi: R->T)``, from the full similarity volume.

    With ``init`` (inherited fields) and ``radius``, each pixel searches only the window around its
    inherited match, as PatchMatch's random search would (``radius`` may also be one ``(H, W)`` map per
    direction, on its source grid: target, then reference); without, the whole map. ``position_prior``
    lowers each pair's mean patch cosine by that much times their squared distance, as fractions of the
    maps' sides, from where the pixel sits in its own map.
    """
    b, c, ht, wt = ft.shape
    hr, wr = fr.shape[-2:]
    r = patch // 2
    ftp = F.pad(ft, (r,) * 4, mode="replicate")
    frp = F.pad(fr, (r,) * 4, mode="replicate")
    vol = torch.einsum("bcn,bcm->bnm", ftp.flatten(2), frp.flatten(2))
    vol = vol.view(b, ht + 2 * r, wt + 2 * r, hr + 2 * r, wr + 2 * r)
    score = vol[:, r:r + ht, r:r + wt, r:r + hr, r:r + wr].clone()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy or dx:
                score += vol[:, r + dy:r + dy + ht, r + dx:r + dx + wt, r + dy:r + dy + hr, r + dx:r + dx + wr]
    del vol
    if position_prior:  # squared distance as two separable terms, never the whole volume twice
        for term in _relative_offsets2(ht, wt, hr, wr, score.device):
            score -= position_prior * patch * patch * term
    fwd_score, bwd_score = score, score
    if init is not None and radius is not None:
        fwd_r, bwd_r = radius if isinstance(radius, tuple) else (radius, radius)
        fwd_score = score.masked_fill(~_window_mask(init[0], hr, wr, fwd_r), float("-inf"))
        back_mask = _window_mask(init[1], ht, wt, bwd_r).permute(0, 3, 4, 1, 2)
        bwd_score = score.masked_fill(~back_mask, float("-inf"))
    fwd = fwd_score.reshape(b, ht * wt, hr * wr).argmax(-1).view(b, ht, wt)
    bwd = bwd_score.reshape(b, ht * wt, hr * wr).argmax(1).view(b, hr, wr)
    phi = torch.stack((fwd % wr, fwd // wr), 1)
    psi = torch.stack((bwd % wt, bwd // wt), 1)
    return phi, psi


def _relative_offsets2(ht: int, wt: int, hr: int, wr: int, device: torch.device,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared vertical and horizontal offsets between relative positions (0..1 along each side), shaped to
    broadcast against a ``(B, ht, wt, hr, wr)`` volume."""
    def rel(n: int) -> torch.Tensor:
        return torch.arange(n, device=device, dtype=torch.float32) / max(n - 1, 1)
    dy = (rel(ht).view(ht, 1) - rel(hr).view(1, hr)).pow(2).view(1, ht, 1, hr, 1)
    dx = (rel(wt).view(wt, 1) - rel(wr).view(1, wr)).pow(2).view(1, 1, wt, 1, wr)
    return dy, dx


def volume_size(ft: torch.Tensor, fr: torch.Tensor, patch: int) -> int:
    """Elements of the (padded) similarity volume of one image pair."""
    p = 2 * (patch // 2)
    return (ft.shape[-2] + p) * (ft.shape[-1] + p) * (fr.shape[-2] + p) * (fr.shape[-1] + p)


def local_search(ft: torch.Tensor, fr: torch.Tensor, phi: torch.Tensor, patch: int, radius: int | torch.Tensor,
                 ) -> torch.Tensor:
    """Refine ``phi`` (source ``ft`` -> destination ``fr``) by trying every offset within ``radius`` (one
    radius, or one per source pixel ``(H, W)``)."""
    hr, wr = fr.shape[-2:]
    src, dst = rows(ft), rows(fr)
    best = _patch_mean(gather_cosine(src, dst, phi, hr, wr), patch)
    best_phi = phi.clone()
    per_pixel = isinstance(radius, torch.Tensor)
    widest = int(radius.max()) if per_pixel else radius
    for dy in range(-widest, widest + 1):
        for dx in range(-widest, widest + 1):
            if not (dx or dy):
                continue
            offset = torch.tensor([dx, dy], device=phi.device).view(1, 2, 1, 1)
            cand = clamp_field(phi + offset, hr, wr)
            score = _patch_mean(gather_cosine(src, dst, cand, hr, wr), patch)
            better = score > best
            if per_pixel:
                better &= radius >= max(abs(dx), abs(dy))
            best = torch.where(better, score, best)
            best_phi = torch.where(better.unsqueeze(1), cand, best_phi)
    return best_phi


def patch_score(ft: torch.Tensor, fr: torch.Tensor, phi: torch.Tensor, patch: int) -> torch.Tensor:
    """Exact mean cosine between the patch at ``p`` and the patch at ``phi(p)`` (edges clamped)."""
    b, c, h, w = ft.shape
    hr, wr = fr.shape[-2:]
    r = patch // 2
    ftp = F.pad(ft, (r,) * 4, mode="replicate")
    dst = rows(fr)
    total = torch.zeros(b, h, w, device=ft.device, dtype=ft.dtype)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            src = rows(ftp[:, :, r + dy:r + dy + h, r + dx:r + dx + w])
            offset = torch.tensor([dx, dy], device=phi.device).view(1, 2, 1, 1)
            idx = flat_index(clamp_field(phi + offset, hr, wr), hr, wr)
            total += (src * dst.index_select(0, idx)).sum(-1).view(b, h, w)
    return total / (patch * patch)


def patchmatch(ft: torch.Tensor, fr: torch.Tensor, phi: torch.Tensor, patch: int, radius: int,
               iterations: int, generator: torch.Generator) -> torch.Tensor:
    """The published PatchMatch: per iteration, jump-flood propagation (offsets 8, 4, 2, 1 in the four
    directions) then random search with the radius halving down to 1. Whole-tensor, every pixel at once."""
    hr, wr = fr.shape[-2:]
    best = patch_score(ft, fr, phi, patch)

    def consider(cand: torch.Tensor) -> None:
        nonlocal best, phi
        cand = clamp_field(cand, hr, wr)
        score = patch_score(ft, fr, cand, patch)
        better = score > best
        best = torch.where(better, score, best)
        phi = torch.where(better.unsqueeze(1), cand, phi)

    for _ in range(iterations):
        for step in (8, 4, 2, 1):
            for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
                # neighbour n = p + (dx, dy) proposes phi(n) - (dx, dy)
                shifted = torch.roll(phi, shifts=(-dy, -dx), dims=(2, 3))
                consider(shifted - torch.tensor([dx, dy], device=phi.device).view(1, 2, 1, 1))
        r = radius
        while r >= 1:
            jitter = torch.randint(-r, r + 1, phi.shape, generator=generator, device="cpu").to(phi.device)
            consider(phi + jitter)
            r //= 2
    return phi



def _grid(phi: torch.Tensor) -> torch.Tensor:
    """The identity field ``(1, 2, H, W)`` on ``phi``'s own grid."""
    h, w = phi.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=phi.device), torch.arange(w, device=phi.device), indexing="ij")
    return torch.stack((xs, ys)).unsqueeze(0)


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over each ``k x k`` window (valid pixels only), as two 1-D passes: O(k) per pixel, not O(k^2)."""
    rows = F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    return F.avg_pool2d(rows, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)


def _neighbourhood_motion(phi: torch.Tensor, psi: torch.Tensor, window: int, tolerance: float = 1.0,
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean displacement of the cycle-consistent matches of ``phi`` in a ``window`` around each pixel, as a
    field; with it, where ``phi`` itself is consistent (round trip within ``tolerance``) and where the window
    held any consistent match to average (a normalised convolution of the displacement field)."""
    grid = _grid(phi)
    ok = ((compose(phi, psi) - grid).float().norm(dim=1, keepdim=True) <= tolerance).float()
    k = min(window | 1, 2 * (max(phi.shape[-2:]) // 2) + 1)
    num = _box_mean((phi - grid).float() * ok, k)
    den = _box_mean(ok, k)
    motion = clamp_field((num / den.clamp_min(1e-6)).round().long() + grid, psi.shape[2], psi.shape[3])
    return motion, ok > 0.5, den > 1e-3


def coherence_fill(phi: torch.Tensor, psi: torch.Tensor, window: int, tolerance: float = 1.0) -> torch.Tensor:
    """Replace the matches of ``phi`` whose round trip ``psi(phi(p))`` misses ``p`` by more than
    ``tolerance`` with the mean displacement of the consistent matches in a ``window`` around them.

    Cycle-consistent matches are almost always right; the inconsistent ones sit mostly in flat or
    repetitive regions where any patch scores alike, so borrowing the motion of reliable neighbours
    beats keeping an arbitrary winner.
    """
    motion, consistent, found = _neighbourhood_motion(phi, psi, window, tolerance)
    return torch.where(~consistent & found, motion, phi)


def prefer_coherent(ft: torch.Tensor, fr: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor, patch: int,
                    window: int, margin: float) -> torch.Tensor:
    """Where the neighbourhood's motion (as in :func:`coherence_fill`) scores within ``margin`` of mean patch
    cosine of the match ``phi`` found, take the neighbourhood's motion instead.

    In a repeated texture (a radiator's fins, bricks, stripes) the patch one period away scores as well as the
    right one, and when both directions pick it the cycle check passes it: only the motion of the surrounding
    photo tells the two apart. Patch scores are box-filtered per-pixel cosines, as in :func:`local_search`.
    """
    motion, _, found = _neighbourhood_motion(phi, psi, window)
    hr, wr = fr.shape[-2:]
    src, dst = rows(ft), rows(fr)
    kept = _patch_mean(gather_cosine(src, dst, phi, hr, wr), patch)
    moved = _patch_mean(gather_cosine(src, dst, motion, hr, wr), patch)
    return torch.where(found & (moved >= kept - margin).unsqueeze(1), motion, phi)
