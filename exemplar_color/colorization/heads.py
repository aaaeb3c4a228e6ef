"""One protocol for the colorization heads: the pipeline chooses a head once and calls every head alike.

A head turns the target's L and the correspondence into the target's ab at the working size:
:class:`~exemplar_color.colorization.analogy.AnalogyHead` (no training) and :class:`NetworkHead` (the
trained sub-net).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..correspondence import Correspondence
from .exact import spread_certain_matches
from .network import ColorizationNet, make_input

__all__ = ["Head", "NetworkHead"]


class Head(Protocol):
    """``head(target_l (B, 1, H, W) in [0, 100], corr) -> ab (B, 2, H, W)`` in Lab units."""

    name: str

    def __call__(self, target_l: torch.Tensor, corr: Correspondence) -> torch.Tensor: ...


class NetworkHead:
    """The trained colorization sub-net as a head; certain matches keep their colour and spread it along L
    (:func:`~exemplar_color.colorization.exact.spread_certain_matches`) before the network is trusted.

    Args:
        net: the network (eval mode).
        chroma_gain: how far its colours are pushed out from gray (1: as predicted; a network trained to
            minimise colour error under uncertainty predicts muted colours). Certain matches keep the
            reference's own colours whatever the gain.
        at_trained_size: run it at the short side it learnt at (its receptive field then spans the same
            share of the photo), and bring the ab back to the working size.
    """

    name = "network"

    def __init__(self, net: ColorizationNet, chroma_gain: float = 1.0, at_trained_size: bool = True):
        self.net, self.chroma_gain, self.at_trained_size = net, chroma_gain, at_trained_size

    def __call__(self, target_l: torch.Tensor, corr: Correspondence) -> torch.Tensor:
        x = make_input(target_l, corr.warped_ab, corr.similarity)
        h, w = x.shape[-2:]
        scale = self.net.config.size / min(h, w) if self.at_trained_size else 1.0
        if scale < 1:
            x = F.interpolate(x, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="bilinear",
                              antialias=True, align_corners=False)
        with torch.inference_mode():
            ab = self.net(x).float() * self.chroma_gain
        if ab.shape[-2:] != (h, w):
            ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
        return spread_certain_matches(ab, corr, target_l)
