"""One protocol for the colorization heads: the pipeline chooses a head once and calls every head alike.

A head turns the target's L and the correspondence into the target's ab at the working size:
:class:`~exemplar_color.colorization.analogy.AnalogyHead` (no training), :class:`NetworkHead` (the
published sub-net, trained) and :class:`HypercolumnHead` (the sub-net that also reads the target's VGG-19
features; it alone can colour with no reference, :meth:`HypercolumnHead.without_reference`).
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..correspondence import Correspondence
from ..errors import ConfigMismatchError
from .exact import spread_certain_matches
from .hypercolumn import HypercolumnNet
from .network import ColorizationNet, make_input

__all__ = ["Head", "NetworkHead", "HypercolumnHead", "network_head"]


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


class HypercolumnHead:
    """The hypercolumn sub-net as a head; certain matches then keep their colour as with :class:`NetworkHead`.

    Args:
        net: the network (eval mode).
        chroma_gain: multiplies its ab (1: as predicted; its colours come from the predicted distribution,
            not from a gain).
        features: the matcher's feature function (:meth:`~exemplar_color.correspondence.Matcher.features`),
            for the no-reference case and for ``at_trained_size``.
        at_trained_size: run the network at the short side it learnt at (its features then see objects at
            the scale it learnt them; one extra backbone pass at that size), and fuse its colours with the
            warped reference ab at the working size; without it, it reads the features the matcher kept
            (``corr.target_features``) at the working size and costs no backbone pass.
        vivid: read the distribution out with the model's vivid readout (more colourful where the reference
            gives nothing, at some cost in colour error; see the model card).
    """

    name = "network"

    def __init__(self, net: HypercolumnNet, chroma_gain: float = 1.0,
                 features: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
                 at_trained_size: bool = True, vivid: bool = False):
        if vivid and not net.has_vivid:
            raise ConfigMismatchError("this model has no vivid readout (exported without one): use the default "
                                      "readout")
        self.net, self.chroma_gain, self.features, self.vivid = net, chroma_gain, features, vivid
        self.at_trained_size = at_trained_size and features is not None

    def _small(self, target_l: torch.Tensor) -> tuple[int, int] | None:
        """The working size brought to the trained short side (None: already about that size)."""
        h, w = target_l.shape[-2:]
        scale = self.net.config.size / min(h, w)
        return (max(16, round(h * scale)), max(16, round(w * scale))) if scale < 0.8 else None

    def _predict(self, target_l: torch.Tensor, corr: Correspondence | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior ab and gate at the working size."""
        size = target_l.shape[-2:]
        small = self._small(target_l) if self.at_trained_size else None
        shrink = (lambda x: x) if small is None else (
            lambda x: F.interpolate(x.float(), size=small, mode="bilinear", antialias=True, align_corners=False))
        l = shrink(target_l)
        if corr is not None and small is None and corr.target_features:
            feats = corr.target_features
        else:
            assert self.features is not None, "a HypercolumnHead without a feature function needs corr.target_features"
            feats = self.features(l)
        ab, sim = (None, None) if corr is None else (shrink(corr.warped_ab), shrink(corr.similarity))
        with torch.inference_mode():
            return self.net.readout(self.net(l, feats, ab, sim), size, vivid=self.vivid)

    def colorize(self, target_l: torch.Tensor, corr: Correspondence) -> tuple[torch.Tensor, torch.Tensor]:
        """ab ``(B, 2, H, W)`` and the trust ``(B, 1, H, W)`` in [0, 1]: where the colours came from the
        reference (1) rather than the network's prior (0)."""
        prior, gate = self._predict(target_l, corr)
        ab = gate * corr.warped_ab.float() + (1 - gate) * prior
        return spread_certain_matches(ab * self.chroma_gain, corr, target_l), gate

    def __call__(self, target_l: torch.Tensor, corr: Correspondence) -> torch.Tensor:
        return self.colorize(target_l, corr)[0]

    def without_reference(self, target_l: torch.Tensor) -> torch.Tensor:
        """ab ``(B, 2, H, W)`` from the photo alone."""
        return self._predict(target_l, None)[0] * self.chroma_gain


def network_head(net: ColorizationNet | HypercolumnNet, chroma_gain: float = 1.0,
                 features: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
                 vivid: bool = False) -> NetworkHead | HypercolumnHead:
    """The head that runs ``net``, whichever architecture it has (``features``: the matcher's, which the
    hypercolumn sub-net reads; ``vivid``: its vivid readout, which only the hypercolumn sub-net has)."""
    if isinstance(net, HypercolumnNet):
        return HypercolumnHead(net, chroma_gain, features, vivid=vivid)
    if vivid:
        raise ConfigMismatchError("vivid colours need the hypercolumn sub-net (its colour distribution); this model "
                                  f"is a {net.config.arch}")
    return NetworkHead(net, chroma_gain)
