"""Several references for one photo: each target pixel takes its colours from the reference that matches it best.

A person restoring a photo puts one reference on the faces and another on the landscape. Here every reference
is matched to the target on its own; each target pixel then scores every reference by how well they match
there (its similarity maps: the forward ones, and the bidirectional ones, high only where both directions
of the correspondence agree). The scores are smoothed along the target's own edges (a
guided filter on its L) before the choice, so a region takes one reference as a whole instead of tearing
into speckles where two references score alike, and the choice follows the photo's edges.

Two places to fuse, both here: the correspondences (warped colours, similarity maps and confidence taken per
pixel from the chosen reference, then one head; the default, see ``docs/reports/multi-reference``) or the
heads' predicted colours (each reference through the head, then blended by the same weights).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..correspondence import Correspondence
from .guided import guided_filter

__all__ = ["match_scores", "reference_weights", "fuse_correspondences", "fuse_ab"]


def match_scores(corrs: Sequence[Correspondence]) -> torch.Tensor:
    """``(B, K, H, W)``: for each target pixel, how well each of the ``K`` references matches it: the mean of
    its similarity maps, forward and bidirectional, over all levels.

    Measured on two Kodak photos joined side by side, each half's own photo as a reference (3 pairs, share
    of pixels labelled with the right reference after smoothing): full VGG-19, five levels: 0.999 (forward
    alone 0.998, bidirectional alone 0.998, the deep levels alone 0.997); the shallow test slices: 0.889
    (bidirectional alone 0.762, forward alone 0.937). The bidirectional maps are sparse (high only where
    the cycle closes); the forward maps fill in between."""
    return torch.cat([c.similarity.mean(1, keepdim=True) for c in corrs], 1).float()


def reference_weights(scores: torch.Tensor, target_l: torch.Tensor, radius: int | None = None, eps: float = 1e-2,
                      temperature: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights of the references and the label map (which reference wins).

    Args:
        scores: ``(B, K, H, W)`` from :func:`match_scores`.
        target_l: ``(B, 1, H, W)`` the target's L (0..100) at the same size: the edges the choice follows.
        radius: guided-filter radius in working pixels (default: 1/8 of the short side, at least 2).
        eps: guided-filter regulariser on L in [0, 1]: smaller follows edges more tightly.
        temperature: 0 (default) picks one reference per pixel (one-hot weights); above 0, a softmax of the
            smoothed scores divided by it blends them.

    Returns:
        ``(weights (B, K, H, W) summing to 1 over K, labels (B, H, W) int64)``.
    """
    h, w = scores.shape[-2:]
    r = radius if radius is not None else max(2, min(h, w) // 8)
    smooth = guided_filter(target_l.float() / 100.0, scores, r, eps)
    labels = smooth.argmax(1)
    if temperature > 0:
        weights = torch.softmax(smooth / temperature, 1)
    else:
        weights = torch.nn.functional.one_hot(labels, scores.shape[1]).permute(0, 3, 1, 2).to(scores.dtype)
    return weights, labels


def fuse_correspondences(corrs: Sequence[Correspondence], weights: torch.Tensor) -> Correspondence:
    """One correspondence whose warped colours, similarity maps, confidence and forward field are, at each
    target pixel, the weighted ones of the references (with one-hot weights: the chosen reference's own).
    ``backward`` is the first reference's (each reference has its own size)."""
    def mix(name: str) -> torch.Tensor:
        stack = torch.stack([getattr(c, name).float() for c in corrs], 1)  # (B, K, C, H, W)
        return (stack * weights[:, :, None]).sum(1)

    first = corrs[0]
    return Correspondence(forward=mix("forward"), backward=first.backward, similarity=mix("similarity"),
                          warped_ab=mix("warped_ab"), confidence=mix("confidence"), levels=first.levels)


def fuse_ab(abs_: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)``: predicted ab of each reference ``(B, 2, H, W)``, blended by ``weights`` ``(B, K, H, W)``."""
    return (torch.stack([a.float() for a in abs_], 1) * weights[:, :, None]).sum(1)
