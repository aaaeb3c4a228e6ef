"""The "analogy" head: colours from the reference alone, no trained network.

Warped reference ab are trusted where the correspondence is reliable (confidence) and propagated to the
rest of the image along the target's own edges: a confidence-weighted normalised convolution with
guided filters at several radii, finest first, so each pixel takes its colour from the nearest reliable
region of similar luminance; reliable matches keep their own colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..correspondence import Correspondence
from .exact import certainty, deep_agreement
from .guided import box, guided_filter


@dataclass
class AnalogyHead:
    """Edge-aware, confidence-weighted propagation of warped reference colours.

    Args:
        radii: guided-filter radii (working pixels), small to large; larger radii reach pixels far from
            any reliable match.
        eps: guided-filter regulariser on L in [0, 1] units: smaller follows edges more tightly.
        sharpness: confidence is raised to this power: higher lets only the best matches vote.
        keep: confidence from which a pixel starts keeping its own warped colour (fully at 1).
        support: weight density at which a finer scale's estimate counts as much as the coarser one.
        semantic: how strongly the deep levels' bidirectional similarity (relu5_1, relu4_1: do the two
            images agree on *what* is there?) lowers the trust in a match; 0 trusts the cycle alone, which
            also holds for consistent matches between different things (a red fruit on green leaves).
    """

    name: ClassVar[str] = "analogy"
    radii: tuple[int, ...] = (2, 8, 32)
    eps: float = 1e-3
    sharpness: float = 2.0
    keep: float = 0.0
    support: float = 0.05
    semantic: float = 2.0

    def __call__(self, target_l: torch.Tensor, corr: Correspondence) -> torch.Tensor:
        return self.propagate(target_l, corr.warped_ab, self.trust(corr))

    def trust(self, corr: Correspondence) -> torch.Tensor:
        """``(B, 1, H, W)`` in [0, 1]: cycle confidence times the deep levels' bidirectional agreement,
        relative to the image's best-agreeing matches (its 95th percentile) and raised to ``semantic``."""
        deep = deep_agreement(corr)
        if self.semantic <= 0 or deep is None:  # shallow levels only: nothing says *what* matched
            return corr.confidence
        deep = deep.clamp(0, 1)
        top = torch.quantile(deep.flatten(1).float(), 0.95, dim=1).clamp_min(1e-3)[:, None, None, None]
        relative = (deep / top).clamp(0, 1).pow(self.semantic)
        # a match whose deep levels agree in absolute terms is certain (exact.py): never distrust it
        return torch.maximum(corr.confidence * relative, certainty(corr))

    def propagate(self, target_l: torch.Tensor, ab: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """``ab`` ``(B, 2, H, W)`` refined with weights ``confidence`` ``(B, 1, H, W)``, guided by L (0..100)."""
        guide = target_l / 100.0
        weight = confidence.clamp(0, 1).pow(self.sharpness) + 1e-4
        radii = sorted(self.radii, reverse=True)
        # coarsest scale: a plain weighted average (convex: it can never overshoot), the fallback everywhere
        out = box(ab * weight, radii[0]) / box(weight, radii[0]).clamp_min(1e-6)
        for radius in radii:  # finer scales override it where reliable pixels of similar L are near
            support = guided_filter(guide, weight, radius, self.eps).clamp_min(0)
            estimate = guided_filter(guide, ab * weight, radius, self.eps) / support.clamp_min(1e-3)
            alpha = support / (support + self.support)
            out = alpha * estimate + (1 - alpha) * out
        # a guided filter is a local linear fit: where the support is tiny the ratio can overshoot, so the
        # propagated colours stay within the colours the reference actually offers (per image and channel)
        lo = ab.flatten(2).amin(-1)[..., None, None]
        hi = ab.flatten(2).amax(-1)[..., None, None]
        out = torch.maximum(torch.minimum(out, hi), lo)
        trust = ((confidence - self.keep) / (1 - self.keep)).clamp(0, 1)
        return trust * ab + (1 - trust) * out
