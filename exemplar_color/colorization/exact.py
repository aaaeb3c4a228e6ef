"""Keep the reference's own colours where a match is certain, whatever head predicted there.

The trained sub-net, like the published one, learnt on cross-image pairs, where most matches are doubtful:
it predicts cautious colours even where the correspondence is exact (a photo matched with a moved copy of
itself: ab error 7.3 for the network against 1.5 for the raw warped colours, 12 training-set photos). A
match is certain when its cycle closes (``confidence``) *and* the deep levels agree in both directions
(bidirectional similarity of relu5_1/relu4_1, absolute: median 0.84 for such copies, 0.11 for retrieved
references). Gating on both keeps exact matches exact (error 1.6) and leaves cross-image predictions as
they were (17.95 -> 18.01, 40 pairs). Thresholds were set on training photos, never on evaluation sets.

Certain matches must also cover enough of the photo (``EXTENT``, on the photo's mean per-pixel certainty): a
moved copy of the photo has 0.77-0.96 (80 held-out training photos), a reference the gallery retrieves
0.01-0.36 — scattered chance agreements of another scene, whose colours, spread, made automatic mode worse
than no reference (ab error at the working size 16.36 against 15.26 without them and 15.20 with no
reference); a near-duplicate of the photo in the gallery (0.53, 0.62) keeps them.

Next to a certain match the network is still cautious, where the same surface continues beyond the pixels
whose match is certain. :func:`spread_certain_matches` lets the colours of certain matches flow to nearby
pixels of similar lightness (a guided filter on L) before the network's prediction is trusted: on 30
held-out training targets, ab error with a moved copy of the photo 1.53 -> 1.22 (analogy head 1.09), with
other photos as references 15.86 -> 15.96.
"""

from __future__ import annotations

import torch

from ..correspondence import Correspondence
from .guided import guided_filter

__all__ = ["SEMANTIC_LEVELS", "EXTENT", "certainty", "deep_agreement", "keep_exact_matches", "spread_certain_matches"]

SEMANTIC_LEVELS = ("relu5_1", "relu4_1")
LOW, HIGH = 0.3, 0.7  # deep bidirectional similarity: no trust below LOW, full trust (of the cycle) above HIGH
EXTENT = (0.4, 0.6)  # share of the photo matched with certainty: chance agreements below, the same scene above


def deep_agreement(corr: Correspondence) -> torch.Tensor | None:
    """``(B, 1, H, W)``: mean bidirectional similarity of the semantic levels; ``None`` without any."""
    semantic = [i for i, lv in enumerate(corr.levels) if lv in SEMANTIC_LEVELS]
    return corr.bidirectional_similarity[:, semantic].mean(1, keepdim=True) if semantic else None


def certainty(corr: Correspondence, low: float = LOW, high: float = HIGH) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1]: cycle confidence times how far the deep bidirectional similarity is above ``low``,
    where enough of the photo is matched so (:data:`EXTENT`; 0 elsewhere in the photo)."""
    deep = deep_agreement(corr)
    if deep is None:  # shallow levels only: no semantic evidence that a match is certain
        return torch.zeros_like(corr.confidence)
    local = corr.confidence * ((deep - low) / (high - low)).clamp(0, 1)
    extent = local.mean((2, 3), keepdim=True)
    return local * ((extent - EXTENT[0]) / (EXTENT[1] - EXTENT[0])).clamp(0, 1)


def keep_exact_matches(pred_ab: torch.Tensor, corr: Correspondence) -> torch.Tensor:
    """``pred_ab`` where matches are doubtful, the warped reference ab where they are certain."""
    g = certainty(corr).to(pred_ab.dtype)
    return g * corr.warped_ab.to(pred_ab.dtype) + (1 - g) * pred_ab


def spread_certain_matches(pred_ab: torch.Tensor, corr: Correspondence, target_l: torch.Tensor, radius: int = 16,
                           support: float = 0.2, eps: float = 1e-3) -> torch.Tensor:
    """``pred_ab`` where no certain match is near; the certain matches' colours, spread along the target's
    L (0..100), where they are. ``support`` is the density of certain matches at which both count equally."""
    g = certainty(corr).to(pred_ab.dtype)
    warped = corr.warped_ab.to(pred_ab.dtype)
    guide = target_l.to(pred_ab.dtype) / 100.0
    density = guided_filter(guide, g, radius, eps).clamp_min(0)
    spread = guided_filter(guide, warped * g, radius, eps) / density.clamp_min(1e-3)
    # a guided filter is a local linear fit: keep the spread colours within the ones the reference offers
    lo, hi = warped.flatten(2).amin(-1)[..., None, None], warped.flatten(2).amax(-1)[..., None, None]
    spread = torch.maximum(torch.minimum(spread, hi), lo)
    a = density / (density + support)
    return keep_exact_matches(a * spread + (1 - a) * pred_ab, corr)
