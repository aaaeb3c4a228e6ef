"""Temporal pieces of video colorization: cheap motion between consecutive frames, the confidence of that
motion, the fusion of reference colours with the previous output's, and shot-change detection.

Motion: coarse-to-fine block matching on L (sum of squared differences over a small box, integer shifts
in a small window at each pyramid level), forward-backward checked. Consecutive frames move little, so a
3-level pyramid (radius 2, 2, then 1 at the working size) covers +-13 working pixels at 59 box
filters per direction and frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..colorization.guided import box
from ..correspondence.fields import sample


def _grid(b: int, h: int, w: int, device) -> torch.Tensor:
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).unsqueeze(0).expand(b, -1, -1, -1)


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``out[p] = x[p + (dx, dy)]``, borders replicated."""
    r = max(abs(dx), abs(dy))
    if r == 0:
        return x
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, r, r), mode="replicate")
    return p[..., r + dy:r + dy + h, r + dx:r + dx + w]


def block_flow(cur: torch.Tensor, prev: torch.Tensor, radius: int = 2, levels: int = 3, patch: int = 2,
               fine_radius: int = 1) -> torch.Tensor:
    """Displacement ``(B, 2, H, W)`` (x, y) such that ``cur[p] ~ prev[p + d(p)]``; L images ``(B, 1, H, W)``.
    Shifts within ``radius`` at the coarser pyramid levels, ``fine_radius`` at the working size."""
    pyr = [(cur, prev)]
    for _ in range(levels - 1):
        c, p = pyr[-1]
        if min(c.shape[-2:]) < 16:
            break
        pyr.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(p, 2, ceil_mode=True)))
    flow = None
    for depth, (c, p) in reversed(list(enumerate(pyr))):
        r = radius if depth else fine_radius
        b, _, h, w = c.shape
        if flow is None:
            flow = torch.zeros(b, 2, h, w, device=c.device)
        else:
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) * 2
        warped = sample(p, _grid(b, h, w, c.device) + flow)
        best = torch.full((b, 1, h, w), float("inf"), device=c.device)
        best_d = torch.zeros(b, 2, h, w, device=c.device)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                cost = box((c - _shift(warped, dx, dy)) ** 2, patch) + 1e-3 * (dx * dx + dy * dy)
                better = cost < best
                best = torch.where(better, cost, best)
                best_d[:, 0:1] = torch.where(better, torch.full_like(best, dx), best_d[:, 0:1])
                best_d[:, 1:2] = torch.where(better, torch.full_like(best, dy), best_d[:, 1:2])
        flow = flow + best_d
    return flow


def flow_confidence(cur: torch.Tensor, prev: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor,
                    sigma_l: float = 4.0, sigma_px: float = 6.0) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1]: how well the previous frame, moved by ``fwd`` (cur -> prev), explains the
    current one (box-averaged L difference) times forward-backward agreement (``bwd``: prev -> cur). The
    round trip is loose (``sigma_px`` 6): block matching is ambiguous in flat regions (median round trip
    ~1 px on bikes and carphone where L agrees to 0.1-0.4), and there either choice carries the same colour;
    tighter (1 px), the previous output kept only ~half its weight where it was right."""
    b, _, h, w = cur.shape
    pos = _grid(b, h, w, cur.device) + fwd
    err = box((cur - sample(prev, pos)) ** 2, 1).sqrt()
    round_trip = fwd + sample(bwd, pos)
    fb = round_trip.norm(dim=1, keepdim=True)
    inside = ((pos[:, :1] >= 0) & (pos[:, :1] <= w - 1) & (pos[:, 1:] >= 0) & (pos[:, 1:] <= h - 1)).float()
    return torch.exp(-0.5 * (err / sigma_l) ** 2) * torch.exp(-0.5 * (fb / sigma_px) ** 2) * inside


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    b, _, h, w = flow.shape
    return sample(x, _grid(b, h, w, flow.device) + flow)


@dataclass
class TemporalState:
    """What the next frame needs from this one: working-size L, the fused ab and its accumulated weight."""

    l: torch.Tensor
    ab: torch.Tensor
    weight: torch.Tensor


def fuse(ab_ref: torch.Tensor, conf_ref: torch.Tensor, ab_prev: torch.Tensor, conf_prev: torch.Tensor,
         weight_prev: torch.Tensor, memory: float = 20.0, floor: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A recursive, per-pixel confidence-weighted mean of the reference colours and the previous output's
    (moved), and its weight: ``w_r = floor + conf_ref``, ``w_p = conf_prev * min(weight_prev, memory)``,
    ``ab = (w_r ab_ref + w_p ab_prev) / (w_r + w_p)``, ``weight = w_r + w_p``.

    The weight accumulates while the motion is sure (a colour seen steadily for many frames is hard to
    move), falls with the motion confidence (occlusion, new content, unsure motion: the reference decides)
    and is capped at ``memory``, so the reference always keeps a share and nothing drifts."""
    w_r = floor + conf_ref
    w_p = conf_prev * weight_prev.clamp(max=memory)
    return (w_r * ab_ref + w_p * ab_prev) / (w_r + w_p), w_r + w_p


class ShotDetector:
    """Cuts from the luminance: a frame starts a new shot when its L histogram (32 bins, small thumbnail)
    differs from the previous frame's by more than ``threshold`` (L1 distance of the normalised histograms,
    0..2) AND the thumbnails' mean absolute L difference exceeds ``min_change`` (gradual lighting changes keep
    the histogram close; a cut changes both)."""

    def __init__(self, threshold: float = 0.5, min_change: float = 12.0, bins: int = 32):
        self.threshold, self.min_change, self.bins = threshold, min_change, bins
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # the last frame's (histogram, thumbnail)
        self.last_scores: tuple[float, float] = (0.0, 0.0)

    def _describe(self, l: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        thumb = F.adaptive_avg_pool2d(l.float(), (36, 64))[0, 0].cpu().numpy()
        hist = np.histogram(l.float().cpu().numpy(), bins=self.bins, range=(0, 100))[0].astype(np.float64)
        return hist / max(hist.sum(), 1), thumb

    def __call__(self, l: torch.Tensor) -> bool:
        """``True`` when the frame with working-size L ``(1, 1, H, W)`` starts a new shot (the first does)."""
        desc = self._describe(l)
        prev, self.previous = self.previous, desc
        if prev is None:
            self.last_scores = (2.0, 100.0)
            return True
        hist_d = float(np.abs(desc[0] - prev[0]).sum())
        mean_d = float(np.abs(desc[1] - prev[1]).mean())
        self.last_scores = (hist_d, mean_d)
        return hist_d > self.threshold and mean_d > self.min_change

    def reset(self) -> None:
        self.previous = None
