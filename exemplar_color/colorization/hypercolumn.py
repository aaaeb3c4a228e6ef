"""The hypercolumn colorization sub-net: it sees what the photo shows, and colours with or without a reference.

The published sub-net (:mod:`.network`) must learn from L alone what grass, sky and skin look like, which
took the authors ~700k ImageNet pairs on GPUs. This one also reads the target's own frozen VGG-19 features
(hypercolumns, as Larsson et al. 2016 and Dahl colour with a frozen VGG; a pooled global-context path as
Iizuka et al. 2016): the matcher computes them anyway, so inference costs no extra backbone pass and
training pays only for the small trainable part.

Two outputs at a quarter of the working resolution (relu3_1's grid):

- **logits over quantised ab** (bins of ``bin_size`` ab units that the training photos use): a colour
  *distribution*, read out as an annealed mean (Zhang et al. 2016). Where the reference gives nothing the
  distribution is the learnt prior, vivid by construction instead of the gray average a regression settles on;
  where it matches, the reference inputs move the mass to its colour.
- **a trust gate**: how far each pixel takes the warped reference ab rather than the distribution's colour,
  learnt from the similarity maps with the published chrominance loss (cycle-warped truth, smooth-L1). It is
  also the map of where the colours came from: the reference (1) or the prior (0).

Inputs: ``L``, warped ab and similarity maps at the working resolution (as :mod:`.network`), plus the
target's unit-normalised features at ``features`` levels (:meth:`~exemplar_color.correspondence.Matcher.
features`). With no reference, the warped ab and the similarity maps are zero ("no match anywhere"), which
the network was trained on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone.spec import DEFAULT_LEVELS, LEVEL_CHANNELS, LEVEL_STRIDE, LEVELS
from ..backbone.weights import WEIGHTS

__all__ = ["ARCH", "FEATURE_LEVELS", "OPTIONAL_BUFFERS", "HypercolumnConfig", "HypercolumnNet", "Prediction",
           "ab_bins", "annealed_mean"]

# checkpoints written before these existed read them as zero (no readout correction, no vivid readout)
OPTIONAL_BUFFERS = ("logit_bias", "vivid_logit_bias")

ARCH = "exemplar-hypercolumn"
ARCH_VERSION = 1
FEATURE_LEVELS = ("relu5_1", "relu4_1", "relu3_1")
AB_RANGE = 110.0  # bins cover [-110, 110]^2 in ab units
TRUNK_STRIDE = 4  # the trunk runs on relu3_1's grid


def ab_bins(bin_size: float = 10.0) -> torch.Tensor:
    """``(Q, 2)`` centres of the square ab grid of side ``bin_size`` covering ``[-110, 110]^2``."""
    n = int(math.ceil(2 * AB_RANGE / bin_size))
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * bin_size - n * bin_size / 2
    a, b = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], 1)


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(B, Q, H, W)`` logits -> ``(B, 2, H, W)`` ab: the mean of the distribution sharpened by
    ``1 / temperature`` (1: the mean, towards 0: the mode; Zhang et al. read out at 0.38)."""
    p = torch.softmax(logits.float() / temperature, 1)
    return torch.einsum("bqhw,qc->bchw", p, centres.to(p.dtype))


@dataclass(frozen=True)
class HypercolumnConfig:
    """Everything that fixes the network's inputs and shape; saved in every checkpoint, checked on load.

    Attributes:
        levels: correspondence levels of the similarity maps, deepest first (as :mod:`.network`).
        features: VGG-19 levels of the target's own features, deepest first (relu3_1 or deeper).
        variant: backbone preprocessing convention (``caffe`` or ``torchvision``): features of another
            backbone mean something else to the network.
        width: channels of the trunk.
        depth: residual blocks of the trunk (dilations 1, 2, 4, 1, 2, 4, ...).
        size: the short side it was trained at (informative).
        bin_size: side of the square ab bins, ab units (10: 22 x 22 bins over [-110, 110]^2; the bins no
            photo uses learn to stay empty).
        temperature: the annealed-mean readout's temperature, chosen on held-out pairs.
        gate_power: the trust gate is raised to this power at readout (above 1: the warped reference is taken
            only where the gate is sure), chosen on held-out pairs; 1 in training.
        vivid_temperature: the temperature of the second, more colourful readout (with the
            ``vivid_logit_bias`` buffer), chosen on held-out pairs; None: the model has none.
    """

    levels: tuple[str, ...] = DEFAULT_LEVELS
    features: tuple[str, ...] = FEATURE_LEVELS
    variant: str = "caffe"
    width: int = 128
    depth: int = 4
    size: int = 128
    bin_size: float = 10.0
    temperature: float = 0.5
    gate_power: float = 1.0
    vivid_temperature: float | None = None
    arch: str = ARCH
    arch_version: int = ARCH_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "features", tuple(self.features))
        for name, lv in (("levels", self.levels), ("features", self.features)):
            bad = [x for x in lv if x not in LEVELS or not x.startswith("relu")]
            if not lv or bad:
                raise ValueError(f"{name} must be VGG-19 relu levels, got {list(lv)}")
            if tuple(sorted(lv, key=LEVELS.index, reverse=True)) != lv:
                raise ValueError(f"{name} must be ordered deepest first, got {list(lv)}")
        if LEVEL_STRIDE[self.features[-1]] != TRUNK_STRIDE:
            raise ValueError(f"features must end at a stride-{TRUNK_STRIDE} level (relu3_1), got {list(self.features)}")
        if self.variant not in WEIGHTS:
            raise ValueError(f"unknown backbone variant {self.variant!r}; choose from {sorted(WEIGHTS)}")
        if not (8 <= self.width <= 1024 and 1 <= self.depth <= 32):
            raise ValueError(f"width must be in [8, 1024] and depth in [1, 32], got {self.width}, {self.depth}")
        if not (5 <= self.bin_size <= 55 and 0 < self.temperature <= 2 and 0.25 <= self.gate_power <= 16):
            raise ValueError(f"bin_size must be in [5, 55], temperature in (0, 2] and gate_power in [0.25, 16], got "
                             f"{self.bin_size}, {self.temperature}, {self.gate_power}")
        if self.vivid_temperature is not None and not 0 < self.vivid_temperature <= 2:
            raise ValueError(f"vivid_temperature must be in (0, 2] or None, got {self.vivid_temperature}")

    @property
    def bins(self) -> int:
        """Number of ab bins (the logits' channels)."""
        return len(ab_bins(self.bin_size))

    @property
    def in_channels(self) -> int:
        """Per-pixel inputs at the working resolution: L, a', b', forward and bidirectional similarity."""
        return 3 + 2 * len(self.levels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"], d["features"] = list(self.levels), list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HypercolumnConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown network settings {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class Prediction:
    """What the network says at the trunk's resolution: ``logits`` ``(B, Q, h, w)`` over the ab bins and the
    trust ``gate`` ``(B, 1, h, w)`` in [0, 1] (1: take the warped reference ab)."""

    logits: torch.Tensor
    gate: torch.Tensor


class _Residual(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class HypercolumnNet(nn.Module):
    """Frozen-feature colorization sub-net; see the module docstring.

    Example:
        >>> net = HypercolumnNet(HypercolumnConfig(width=16, depth=1)).eval()
        >>> feats = {lv: torch.randn(1, c, 64 // s, 64 // s) for lv, c, s in
        ...          (("relu5_1", 512, 16), ("relu4_1", 512, 8), ("relu3_1", 256, 4))}
        >>> ab, gate = net.colorize(torch.full((1, 1, 64, 64), 50.0), feats)
        >>> ab.shape, gate.shape
        (torch.Size([1, 2, 64, 64]), torch.Size([1, 1, 64, 64]))
    """

    def __init__(self, config: HypercolumnConfig | None = None, **kwargs: Any):
        super().__init__()
        self.config = c = config or HypercolumnConfig(**kwargs)
        w = c.width
        self.reference_stem = nn.Conv2d(c.in_channels * TRUNK_STRIDE ** 2, w, 1)
        self.feature_stems = nn.ModuleDict({lv: nn.Conv2d(LEVEL_CHANNELS[lv], w, 1) for lv in c.features})
        deepest = LEVEL_CHANNELS[c.features[0]]
        self.global_context = nn.Sequential(nn.Linear(deepest, w), nn.ReLU(inplace=True), nn.Linear(w, w))
        self.merge = nn.Sequential(nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.trunk = nn.Sequential(*[_Residual(w, (1, 2, 4)[i % 3]) for i in range(c.depth)])
        self.logits = nn.Conv2d(w, c.bins, 1)
        self.gate = nn.Conv2d(w, 1, 1)
        self.register_buffer("centres", ab_bins(c.bin_size), persistent=False)
        # added to the logits at readout only: minus the log of the class-rebalancing weights the network was
        # trained with (none: zero) gives its odds back the colours' real base rates, plus a share (chosen on
        # held-out pairs) of Zhang et al.'s rebalancing, which favours rare, saturated colours; zero in training
        self.register_buffer("logit_bias", torch.zeros(c.bins))
        # the vivid readout's: a larger share of that rebalancing, so rarer, more saturated colours gain odds
        self.register_buffer("vivid_logit_bias", torch.zeros(c.bins))
        scale = torch.ones(c.in_channels)
        scale[0], scale[1:3] = 1.0 / 50.0, 1.0 / AB_RANGE
        self.register_buffer("in_scale", scale.view(1, -1, 1, 1), persistent=False)

    def forward(self, l: torch.Tensor, features: dict[str, torch.Tensor], ab: torch.Tensor | None = None,
                similarity: torch.Tensor | None = None) -> Prediction:
        """``l`` ``(B, 1, H, W)`` in [0, 100]; ``features`` level -> ``(B, C, H/s, W/s)`` unit features;
        ``ab`` ``(B, 2, H, W)`` warped reference ab and ``similarity`` ``(B, 2 * nlev, H, W)``, both None (or
        zero) for "no reference"."""
        c = self.config
        missing = [lv for lv in c.features if lv not in features]
        if missing:
            raise ValueError(f"features {missing} are missing (the network reads {list(c.features)})")
        b, _, h, w = l.shape
        if ab is None:
            ab = l.new_zeros(b, 2, h, w)
        if similarity is None:
            similarity = l.new_zeros(b, 2 * len(c.levels), h, w)
        x = torch.cat([l - 50.0, ab.to(l.dtype), similarity.to(l.dtype)], 1)
        if x.shape[1] != c.in_channels:
            raise ValueError(f"expected {c.in_channels - 3} similarity maps for levels {list(c.levels)}, "
                             f"got {x.shape[1] - 3}")
        grid = features[c.features[-1]].shape[-2:]
        x = x * self.in_scale.to(x.dtype)
        full = (grid[0] * TRUNK_STRIDE, grid[1] * TRUNK_STRIDE)
        if x.shape[-2:] != full:
            x = F.interpolate(x, size=full, mode="bilinear", align_corners=False)
        y = self.reference_stem(F.pixel_unshuffle(x, TRUNK_STRIDE))
        for lv in c.features:
            f = features[lv].to(y.dtype) * math.sqrt(LEVEL_CHANNELS[lv])  # unit vectors -> unit-variance values
            p = self.feature_stems[lv](f)
            y = y + (p if p.shape[-2:] == grid else F.interpolate(p, size=grid, mode="bilinear", align_corners=False))
        deep = features[c.features[0]].to(y.dtype) * math.sqrt(LEVEL_CHANNELS[c.features[0]])
        y = y + self.global_context(deep.mean((2, 3)))[:, :, None, None]
        y = self.trunk(self.merge(y))
        return Prediction(self.logits(y), torch.sigmoid(self.gate(y)))

    @property
    def has_vivid(self) -> bool:
        """Whether the model carries a calibrated vivid readout."""
        return self.config.vivid_temperature is not None

    def readout(self, pred: Prediction, size: tuple[int, int], temperature: float | None = None,
                gate_power: float | None = None, vivid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The distribution's annealed mean ``(B, 2, H, W)`` and the gate ``(B, 1, H, W)``, brought to ``size``
        (``vivid``: the more colourful readout, at some cost in colour error)."""
        if vivid and not self.has_vivid:
            raise ValueError("this model has no vivid readout (it was exported without one)")
        bias = self.vivid_logit_bias if vivid else self.logit_bias
        logits = pred.logits + bias.to(pred.logits.dtype)[:, None, None]
        default_t = self.config.vivid_temperature if vivid else self.config.temperature
        prior = annealed_mean(logits, self.centres, temperature or default_t)
        prior = F.interpolate(prior, size=size, mode="bilinear", align_corners=False)
        gate = pred.gate.float() ** (gate_power or self.config.gate_power)
        return prior, F.interpolate(gate, size=size, mode="bilinear", align_corners=False)

    def colorize(self, l: torch.Tensor, features: dict[str, torch.Tensor], ab: torch.Tensor | None = None,
                 similarity: torch.Tensor | None = None, temperature: float | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """ab ``(B, 2, H, W)`` and the gate ``(B, 1, H, W)`` at ``l``'s resolution: the distribution's annealed
        mean where the gate is low, the warped reference ab where it is high. With no reference the gate is 0."""
        prior, gate = self.readout(self(l, features, ab, similarity), l.shape[-2:], temperature)
        if ab is None:
            return prior, torch.zeros_like(gate)
        return gate * ab.float() + (1 - gate) * prior, gate
