"""The colorization sub-net of Deep Exemplar-based Colorization (He et al., SIGGRAPH 2018).

Input, in this order: ``L - 50``, the reference ab warped onto the target (``a', b'``), then the forward
similarity maps of every correspondence level (deepest first) and the bidirectional maps in the same order:
``3 + 2 * len(levels)`` channels (13 for the standard five levels). Output: ab, tanh-bounded, scale 100.

The architecture is the published U-Net-like one (the user-guided network of Zhang et al. 2017 that the
paper builds on): encoder blocks of 64-128-256-512 channels with three 2x downsamplings, two dilated
(rate 2) 512-channel blocks and one plain 512 block at 1/8 resolution, a decoder of transposed
convolutions whose outputs are summed with 3x3 projections of the encoder at 1/4, 1/2 and full
resolution; BatchNorm closes every block; ReLU everywhere. At ``width=1`` it has ≈34.1 M parameters;
``width`` scales every channel count for small CPU variants.

Colour scaling lives inside the model (inputs are brought to roughly unit range, the output is scaled
back to ab units), so callers only ever handle Lab values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import known_fields
from ..backbone.spec import DEFAULT_LEVELS, LEVELS
from ..backbone.weights import WEIGHTS

__all__ = ["ARCH", "AB_SCALE", "ColorizationNetConfig", "ColorizationNet", "make_input"]

ARCH = "deep-exemplar-unet"
"""Architecture name stored in every checkpoint; a checkpoint with another name is refused."""
ARCH_VERSION = 1
AB_SCALE = 100.0  # tanh output x 100 -> ab units (the published bound)
_L_SCALE, _AB_IN_SCALE = 50.0, 110.0  # bring L-50 and ab to about [-1, 1] before the first conv


@dataclass(frozen=True)
class ColorizationNetConfig:
    """Everything that fixes the network's inputs and shape; saved in every checkpoint and checked on load.

    Attributes:
        levels: correspondence levels whose similarity maps are fed in, deepest first (their count fixes
            the input channels, their names which maps a checkpoint expects).
        variant: VGG-19 preprocessing convention of the backbone that produced the maps (``torchvision``
            or ``caffe``): maps from another backbone mean something else to the network.
        width: channel multiplier (1.0 = the published ≈34 M parameter network).
        size: working size (pixels, square side) the network was trained at; informative for callers.
        arch: architecture name (:data:`ARCH`).
    """

    levels: tuple[str, ...] = DEFAULT_LEVELS
    variant: str = "torchvision"  # when not given: the library's default when this record was made (callers rely on it)
    width: float = 1.0
    size: int = 256
    arch: str = ARCH
    arch_version: int = ARCH_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        bad = [lv for lv in self.levels if lv not in LEVELS or not lv.startswith("relu")]
        if not self.levels or bad:
            raise ValueError(f"levels must be VGG-19 relu levels, got {list(self.levels)}")
        ordered = tuple(sorted(self.levels, key=LEVELS.index, reverse=True))
        if ordered != self.levels:
            raise ValueError(f"levels must be ordered deepest first ({list(ordered)}), got {list(self.levels)}")
        if self.variant not in WEIGHTS:
            raise ValueError(f"unknown backbone variant {self.variant!r}; choose from {sorted(WEIGHTS)}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if self.size % 8 or self.size <= 0:
            raise ValueError(f"size must be a positive multiple of 8, got {self.size}")

    @property
    def in_channels(self) -> int:
        """L, a', b', then forward and bidirectional similarity for every level."""
        return 3 + 2 * len(self.levels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ColorizationNetConfig":
        return cls(**known_fields(cls, d, "network settings"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _block(cin: int, cout: int, n: int, dilation: int = 1) -> nn.Sequential:
    """``n`` 3x3 conv + ReLU, then BatchNorm (the published block)."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=dilation, dilation=dilation),
                   nn.ReLU(inplace=True)]
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class _Up(nn.Module):
    """Decoder stage: transposed conv (2x) summed with a 3x3 projection of the encoder skip, then convs + BN."""

    def __init__(self, cin: int, cskip: int, cout: int, n: int, last_leaky: bool = False):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
        self.skip = nn.Conv2d(cskip, cout, 3, padding=1)
        layers: list[nn.Module] = []
        for _ in range(n):
            layers += [nn.Conv2d(cout, cout, 3, padding=1),
                       nn.LeakyReLU(0.2, inplace=True) if last_leaky else nn.ReLU(inplace=True)]
        if not last_leaky:
            layers.append(nn.BatchNorm2d(cout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.body(F.relu(self.up(x) + self.skip(skip)))


def make_input(l: torch.Tensor, ab: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The network input ``cat([L - 50, ab, similarity])``.

    Args:
        l: ``(B, 1, H, W)`` CIE L in [0, 100].
        ab: ``(B, 2, H, W)`` warped reference ab (or the cycle-warped T'_ab in training), ab units.
        similarity: ``(B, 2 * nlev, H, W)`` forward maps deepest first, then bidirectional maps.
    """
    return torch.cat([l - 50.0, ab, similarity.to(l.dtype)], 1)


class ColorizationNet(nn.Module):
    """U-Net-like colorization sub-net: ``(B, 3 + 2 * nlev, H, W)`` -> ``(B, 2, H, W)`` ab.

    Any ``H, W`` works: inputs are reflect-padded to a multiple of 8 and the output cropped back.

    Example:
        >>> net = ColorizationNet(ColorizationNetConfig(levels=("relu3_1", "relu2_1", "relu1_1"), width=0.125))
        >>> net(torch.zeros(1, 9, 40, 40)).shape
        torch.Size([1, 2, 40, 40])
    """

    def __init__(self, config: ColorizationNetConfig | None = None, **kwargs: Any):
        super().__init__()
        self.config = config or ColorizationNetConfig(**kwargs)
        w = self.config.width
        c1, c2, c3, c4 = (_ch(c, w) for c in (64, 128, 256, 512))
        self.enc1 = _block(self.config.in_channels, c1, 2)
        self.enc2 = _block(c1, c2, 2)
        self.enc3 = _block(c2, c3, 3)
        self.enc4 = _block(c3, c4, 3)
        self.mid5 = _block(c4, c4, 3, dilation=2)
        self.mid6 = _block(c4, c4, 3, dilation=2)
        self.mid7 = _block(c4, c4, 3)
        self.up8 = _Up(c4, c3, c3, 2)  # 1/8 -> 1/4, skip from enc3
        self.up9 = _Up(c3, c2, c2, 1)  # 1/4 -> 1/2, skip from enc2
        self.up10 = _Up(c2, c1, c2, 1, last_leaky=True)  # 1/2 -> full, skip from enc1
        self.out = nn.Conv2d(c2, 2, 1)
        scale = torch.ones(self.config.in_channels)
        scale[0], scale[1:3] = 1.0 / _L_SCALE, 1.0 / _AB_IN_SCALE
        self.register_buffer("in_scale", scale.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` from :func:`make_input` -> predicted ab in ab units, within ±100."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (B, {self.config.in_channels}, H, W) for levels "
                             f"{list(self.config.levels)}, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        x = x * self.in_scale.to(x.dtype)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(e1[:, :, ::2, ::2])
        e3 = self.enc3(e2[:, :, ::2, ::2])
        m = self.enc4(e3[:, :, ::2, ::2])
        m = self.mid7(self.mid6(self.mid5(m)))
        d = self.up10(self.up9(self.up8(m, e3), e2), e1)
        ab = torch.tanh(self.out(d)) * AB_SCALE
        return ab[..., :h, :w]

    def colorize(self, l: torch.Tensor, ab: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        """Predicted ab from the correspondence outputs (see :func:`make_input`)."""
        return self(make_input(l, ab, similarity))
