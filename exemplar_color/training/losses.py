"""The two training losses of Deep Exemplar-based Colorization.

- Chrominance: smooth-L1 between predicted and ground-truth ab, for the branch whose input is the
  cycle-warped ground truth T'_ab (teaches the network to trust and propagate reliable colours).
- Perceptual: L2 between VGG-19 features (relu5_1 by default) of the predicted colour image (input L +
  predicted ab) and of the ground truth, for the branch with a real reference (teaches plausible colours
  where the reference has no match; it does not ask for the ground truth's exact colours).

total = chrominance + alpha * perceptual, alpha = 0.005 as published. The chrominance term is a mean per
ab value; the perceptual term is the squared L2 distance between feature *vectors* (summed over channels),
averaged over positions and images. That reading is what makes the published alpha meaningful: with a
mean per feature value as well, alpha = 0.005 scales the perceptual term to ~0.1% of the chrominance term
(measured with relu3_1: ~6 x 0.005 = 0.03 against ~5-15), which switches the perceptual branch off; summed
over channels it is of the same order (~1500 x 0.005 = 7.7). Neither term depends on batch or image size.
Features are measured at torchvision's input scale whatever the backbone's convention: Caffe's 0..255
inputs make relu5_1 features ~58x larger (measured: a perceptual term of 3e6, which at alpha = 0.005
drowned the chrominance term a thousand times over), so the backbone's ``input_gain`` is divided out.

Two optional terms (off by default, so the published recipe is unchanged) act on the real-reference
branch, the condition the network meets in use: the chrominance loss against the true ab there too
(``reference_chroma``), and :func:`saturation_loss` (``saturation``), which asks each predicted image to be
as colourful as its truth without saying where — a regression loss alone settles on cautious, washed-out
colours wherever the reference leaves the answer open.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import VGG19Features
from ..color import lab_to_rgb
from .config import ALPHA

__all__ = ["chrominance_loss", "saturation_loss", "PerceptualLoss", "ALPHA", "SMOOTH_L1_BETA"]

SMOOTH_L1_BETA = 1.0  # ab units: quadratic below one unit of ab, linear above


def chrominance_loss(pred_ab: torch.Tensor, target_ab: torch.Tensor, beta: float = SMOOTH_L1_BETA) -> torch.Tensor:
    """Mean smooth-L1 between ``(B, 2, H, W)`` ab tensors (ab units)."""
    return F.smooth_l1_loss(pred_ab.float(), target_ab.float(), beta=beta)


def saturation_loss(pred_ab: torch.Tensor, target_ab: torch.Tensor) -> torch.Tensor:
    """Mean over images of ``|mean chroma(pred) - mean chroma(target)|`` (chroma = ``|ab|``, ab units)."""
    def chroma(ab: torch.Tensor) -> torch.Tensor:
        return (ab.float().pow(2).sum(1) + 1e-6).sqrt().flatten(1).mean(1)

    return (chroma(pred_ab) - chroma(target_ab)).abs().mean()


class PerceptualLoss(nn.Module):
    """Squared L2 distance between VGG-19 feature vectors of predicted and ground-truth colour images,
    averaged over positions.

    Args:
        backbone: a frozen :class:`VGG19Features` providing ``level`` (relu5_1 needs a full weight file).
        level: the feature level compared.
    """

    def __init__(self, backbone: VGG19Features, level: str = "relu5_1"):
        super().__init__()
        if level not in backbone.levels:
            raise ValueError(f"perceptual level {level} is not computed by the backbone (it has "
                             f"{list(backbone.levels)})")
        self.backbone = backbone
        self.level = level

    def forward(self, l: torch.Tensor, pred_ab: torch.Tensor, target_ab: torch.Tensor) -> torch.Tensor:
        """``l`` ``(B, 1, H, W)`` in 0..100, ab ``(B, 2, H, W)``; gradients flow into ``pred_ab`` only."""
        with torch.autocast(l.device.type, enabled=False):  # colour conversion in float32 even under AMP
            l, pred_ab, target_ab = l.float(), pred_ab.float(), target_ab.float()
            pred = lab_to_rgb(torch.cat([l, pred_ab], 1))
            target = lab_to_rgb(torch.cat([l, target_ab], 1))
        with torch.no_grad():
            want = self.backbone(target)[self.level]
        got = self.backbone(pred)[self.level]
        return ((got.float() - want.float()) / self.backbone.input_gain).pow(2).sum(1).mean()
