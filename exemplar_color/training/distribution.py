"""Training objective of the hypercolumn sub-net (:mod:`exemplar_color.colorization.hypercolumn`).

Every batch has three branches, a third each, so one network learns all three uses:

- **chrominance** (published): the reference input is T'_ab, the target's own colours sent around the
  cycle — right exactly where the correspondence is consistent;
- **reference**: the real reference's R'_ab and similarity maps, the condition met in use;
- **no reference**: warped ab and similarity maps all zero ("no match anywhere"), the automatic colorizer.

Two losses: class-rebalanced cross-entropy between the predicted ab distribution and the soft-encoded truth
(Zhang et al. 2016: each pixel's truth spread over its 5 nearest bins with a Gaussian of sigma 5, weights
``1 / ((1 - lambda) p + lambda / Q)`` from the bins' frequency ``p`` in the training photos, so rare saturated colours
are not drowned by the common grays; lambda 1 turns that off and the readout rebalances instead), on the real-
and no-reference branches, and on T'_ab's as much as ``cycle_ce`` says: trained plain (lambda 1) with it, the
distribution learnt to copy real references as it copies T'_ab, which is right wherever the cycle closes
(measured on the full recipe: by the end a real reference added 0.36 of held-out error over none; without it, it
removed 0.07; docs/training.md); and the chrominance loss (smooth-L1 to the truth) on the fused output of the
real-reference branch, with the distribution's readout held fixed so that it trains only the trust gate — a
regression loss on the distribution would pull it back to gray. The gate does not learn on the chrominance
branch: there T'_ab is the truth wherever the cycle closes, while a real reference with the same similarity maps
brings colours of another photo, so half the batch taught it to trust what the other half refuted (measured after
600 steps: held-out ab L1 with a real reference 11.6 against 9.7 with none; raising the gate to the 16th power at
readout still left 9.85 against 9.31). The readout held fixed undoes the rebalancing (the net's ``logit_bias`` is
``-log(weights)`` in training): measured after 600 steps, the rebalanced odds read out as-is gave colours twice
as saturated as the truth and an ab error above the gray image's, so a gate trained against them learnt to take
the warped reference almost everywhere.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from ..colorization.hypercolumn import TRUNK_STRIDE, HypercolumnNet, annealed_mean
from .cache import FEATURE_PREFIX
from .losses import chrominance_loss

__all__ = ["soft_encode", "bin_frequencies", "rebalancing_weights", "hypercolumn_loss", "features_of", "truth_grid"]

SOFT_SIGMA, SOFT_NEIGHBOURS = 5.0, 5


def truth_grid(ab: torch.Tensor) -> torch.Tensor:
    """Ground-truth ab at the trunk's resolution (mean over each ``4 x 4`` cell)."""
    return F.avg_pool2d(ab.float(), TRUNK_STRIDE)


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, sigma: float = SOFT_SIGMA,
                neighbours: int = SOFT_NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 2, H, W)`` ab -> ``(B, Q, H, W)`` soft targets over ``centres`` ``(Q, 2)`` and ``(B, H, W)`` the
    nearest bin of every pixel."""
    b, _, h, w = ab.shape
    flat = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, centres.float()).pow(2)
    near_d2, near = d2.topk(neighbours, dim=1, largest=False)
    wts = torch.softmax(-near_d2 / (2 * sigma ** 2), 1)
    target = torch.zeros_like(d2).scatter_(1, near, wts)
    return target.view(b, h, w, -1).permute(0, 3, 1, 2), near[:, 0].view(b, h, w)


def bin_frequencies(ab_batches: Iterable[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
    """``(Q,)`` share of truth pixels (at the trunk's resolution) whose nearest bin is each bin."""
    counts = torch.zeros(len(centres), dtype=torch.float64)
    for ab in ab_batches:
        _, nearest = soft_encode(truth_grid(ab), centres, neighbours=1)
        counts += torch.bincount(nearest.flatten().cpu(), minlength=len(centres)).double()
    return (counts / counts.sum().clamp_min(1)).float()


def rebalancing_weights(freq: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """``(Q,)`` per-bin loss weights ``1 / ((1 - lam) p + lam / Q)``, scaled so that their mean over the training
    pixels is 1 (Zhang et al.: lam = 0.5). ``lam = 1`` switches rebalancing off."""
    w = 1.0 / ((1 - lam) * freq + lam / len(freq))
    return w / (freq * w).sum()


def _branches(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Reference inputs of a batch split in three: cycle ab, real reference, nothing; and how many have one."""
    n = x["l"].shape[0]
    nc = nr = n // 3 if n >= 3 else 0
    has = nc + nr
    ab = torch.cat([x["cycle_ab"][:nc], x["warped_ab"][nc:has], torch.zeros_like(x["ab"][has:])])
    sim = torch.cat([x["similarity"][:has], torch.zeros_like(x["similarity"][has:])])
    return ab, sim, has


def features_of(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The target features of a decoded cache batch, by level."""
    return {k[len(FEATURE_PREFIX):]: v for k, v in x.items() if k.startswith(FEATURE_PREFIX)}


def hypercolumn_loss(model: torch.nn.Module, net: HypercolumnNet, x: dict[str, torch.Tensor],
                     weights: torch.Tensor, cycle_ce: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss of one decoded cache batch (see the module docstring): ``loss``, ``ce``, ``chroma``.

    ``model`` is what runs the forward pass (``net`` itself, or its DDP wrapper); ``cycle_ce`` weighs the
    chrominance branch's cross-entropy against the other branches'."""
    ab_in, sim_in, has = _branches(x)
    nc = has // 2  # the chrominance branch: T'_ab in, first in the batch
    pred = model(x["l"], features_of(x), ab_in, sim_in)
    target, nearest = soft_encode(truth_grid(x["ab"]), net.centres)
    logp = torch.log_softmax(pred.logits.float(), 1)
    per_image = (-(target * logp).sum(1) * weights.to(logp.device)[nearest]).mean((1, 2))
    share = torch.ones_like(per_image)
    share[:nc] = cycle_ce
    ce = (per_image * share).sum() / share.sum().clamp_min(1e-6)
    chroma = ce.new_zeros(())
    if has > nc:  # the gate learns on the real reference only (see the module docstring)
        size = x["l"].shape[-2:]
        logits = pred.logits[nc:has].detach() + net.logit_bias[:, None, None]  # the readout used in inference
        prior = annealed_mean(logits, net.centres, net.config.temperature)
        prior = F.interpolate(prior, size=size, mode="bilinear", align_corners=False)
        gate = F.interpolate(pred.gate[nc:has].float(), size=size, mode="bilinear", align_corners=False)
        fused = gate * ab_in[nc:has].float() + (1 - gate) * prior
        chroma = chrominance_loss(fused, x["ab"][nc:has])
    return {"loss": ce + chroma, "ce": ce, "chroma": chroma}
