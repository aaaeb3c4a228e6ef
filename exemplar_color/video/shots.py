"""Shots: where a cut starts a new one (luminance histogram and thumbnail change), and which reference
colours it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F



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


MIN_MATCH = 0.9  # a reference that shows the shot: frames of the same shot score 0.91-0.99 (bikes.mp4 at
# working size 256: frame 0 against frames 10 and 29, frame 32 against 31), the first frame after its cut 0.61,
# unrelated photos 0.55-0.68 at size 256 but up to 0.80 at size 144 (coarser grids close more cycles)
MATCH_DROP = 0.15


def match_score(corr) -> float:
    """How much of the frame a reference explains: the mean of the correspondence's cycle confidence
    (matches that come back to where they started), the share of the frame whose colours it can give."""
    return float(corr.confidence.mean())


def suits(score: float, best_before: float) -> bool:
    """Whether a shot's best reference (``score``) suits it: it shows the shot (``MIN_MATCH``), or it suits it
    about as well as any reference suited an earlier shot (within ``MATCH_DROP``). A photo of similar content
    never matches like a frame of the film (~0.65, as unrelated photos) and is kept for every shot; a frame of
    the first shot that stops matching after a cut (0.98 -> 0.61 at size 256, 1.0 -> 0.80 at 144) is not."""
    return score >= MIN_MATCH or score > best_before - MATCH_DROP
