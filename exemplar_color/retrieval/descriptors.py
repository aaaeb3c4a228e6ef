"""Retrieval descriptors, computed from the gray (Lab L) version of every image.

Gallery and query must live in the same domain: the query is a black-and-white photo, so every gallery
image is reduced to its luminance first (Lab L, shown to VGG-19 as the neutral gray with that lightness,
as :func:`~exemplar_color.color.l_to_gray` defines). Each image gives:

``global``  ``(D,)`` float32, L2-normalised: the first-stage descriptor. A pooled convolutional level
            (GeM, p=3, by default; relu5_4 for the full model, any level the weight file covers), or
            ``fc6`` as published when the full VGG-19 file with classifier layers is present.
``grid``    ``(G*G, C)`` uint8: the 7x7 grid of L2-normalised cell features of ``grid_level`` (relu5_4 as
            published) for local re-ranking, quantised to 8 bits (ReLU features are >= 0, so unit vectors
            lie in [0, 1]; 8 bits change a cosine by ~5e-4 on average, < 5e-3 at worst, and cut storage 4x
            against float32).
``hist``    ``(G*G, bins)`` float16: 10-bin luminance histograms of the same grid cells, of the image's L with
            its mean moved to 50 (``hist_centre``): an old photo's exposure is arbitrary (fading, scanning), so
            tones are compared as a distribution, not as absolute levels. Measured on 2,200 real photos
            with brightness-shifted near-duplicate queries: top-1 0.886 with absolute L, 0.97 centred.
``class_id`` int: VGG-19's top-1 ImageNet class when classifier layers are present, else -1.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..artifacts import file_sha256, known_fields
from ..backbone.features import VGG19Features
from ..color import l_to_gray, rgb_to_gray_lab_l
from ..layout import to_tensor
from ..io import ImageInput, as_array
from ..runtime import resolve_device
from ..backbone.spec import DEFAULT_VARIANT, LEVEL_CHANNELS, LEVELS, VARIANTS, Variant
from ..backbone.weights import resolve_weights

__all__ = [
    "DescriptorConfig",
    "DescriptorExtractor",
    "Descriptors",
    "prepare_gray",
    "luminance_histograms",
    "pool_global",
    "grid_features",
    "quantise_unit",
    "dequantise_unit",
]

_FC = {"fc6": 4096, "fc7": 4096}


@dataclass(frozen=True)
class DescriptorConfig:
    """What a descriptor is made of; an index is only ever searched with exactly this configuration.

    Args:
        level: global-descriptor level: a conv level (``relu5_4`` for the full model; ``relu3_1`` with the
            slice weights) pooled over space, or ``fc6``/``fc7`` (needs the classifier layers).
        grid_level: conv level of the re-ranking grid; defaults to ``level`` (or ``relu5_4`` for fc levels).
        variant: VGG-19 preprocessing/weights convention, ``torchvision`` or ``caffe``.
        size: images are squashed to ``size x size`` gray before VGG (fc6's published 224 input).
        grid: cells per side of the local grid (7 as published).
        bins: luminance-histogram bins per cell (10 as published).
        pool: ``gem`` (generalised mean, p=3), ``avg`` or ``max`` pooling of conv features.
        classes: also predict the ImageNet class (fc8), used as a soft prior in ranking.
        hist_centre: histogram L - mean(L) + 50 instead of L (robust to exposure; see module docstring).
        weights_sha256: SHA-256 of the weight file (``"random"`` for untrained timing runs).
    """

    level: str = "relu5_4"
    grid_level: str = ""
    variant: Variant = DEFAULT_VARIANT
    size: int = 224
    grid: int = 7
    bins: int = 10
    pool: str = "gem"
    classes: bool = False
    hist_centre: bool = True
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown VGG-19 variant {self.variant!r}; choose from {', '.join(VARIANTS)}")
        if self.level not in LEVELS or self.level in ("fc8",):
            raise ValueError(f"unknown descriptor level {self.level!r}; use a conv level or fc6/fc7")
        if not self.grid_level:
            object.__setattr__(self, "grid_level", "relu5_4" if self.level in _FC else self.level)
        if self.grid_level not in LEVEL_CHANNELS:
            raise ValueError(f"grid_level must be a conv level (relu*_*), got {self.grid_level!r}")
        if self.pool not in ("gem", "avg", "max"):
            raise ValueError(f"pool must be gem, avg or max, got {self.pool!r}")
        if self.size < 32 or self.grid < 1 or self.bins < 1:
            raise ValueError(f"size >= 32, grid >= 1, bins >= 1 required; got {self.size}, {self.grid}, {self.bins}")

    @property
    def kind(self) -> str:
        """Human name of the global descriptor, e.g. ``gem(relu5_4)`` or ``fc6``."""
        return self.level if self.level in _FC else f"{self.pool}({self.level})"

    @property
    def dim(self) -> int:
        return _FC.get(self.level) or LEVEL_CHANNELS[self.level]

    @property
    def grid_dim(self) -> int:
        return LEVEL_CHANNELS[self.grid_level]

    @property
    def cells(self) -> int:
        return self.grid * self.grid

    @property
    def levels(self) -> tuple[str, ...]:
        """VGG-19 levels the extractor runs to."""
        lv = [self.level, self.grid_level] + (["fc8"] if self.classes else [])
        return tuple(dict.fromkeys(lv))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "dim": self.dim, "grid_dim": self.grid_dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DescriptorConfig":
        return cls(**known_fields(cls, d, "descriptor settings", derived=("kind", "dim", "grid_dim")))


@dataclass
class Descriptors:
    """A batch of descriptors (numpy, ready for the store): see the module docstring for shapes."""

    global_: np.ndarray
    grid: np.ndarray
    hist: np.ndarray
    class_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.global_)


def prepare_gray(image: ImageInput | np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Any image -> its Lab lightness squashed to ``size x size``, and the gray VGG-19 sees.

    Returns:
        ``(gray, L)``: ``(1, size, size)`` float32, gray in [0, 1] and L in [0, 100].
    """
    t = to_tensor(as_array(image))
    lum = rgb_to_gray_lab_l(t.expand(-1, 3, -1, -1))  # (1, 1, H, W), [0, 100]
    lum = F.interpolate(lum, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    lum = lum.clamp(0.0, 100.0)
    return l_to_gray(lum)[0], lum[0]


def luminance_histograms(lum: torch.Tensor, grid: int = 7, bins: int = 10, centre: bool = False) -> torch.Tensor:
    """Per-cell luminance histograms, normalised to sum 1.

    Args:
        lum: ``(B, 1, H, W)`` Lab L in [0, 100].
        centre: first shift each image's L so that its mean is 50 (clamped to [0, 100]).

    Returns:
        ``(B, grid*grid, bins)`` float32; cell ``r * grid + c`` covers rows ``[r*H/grid, (r+1)*H/grid)``.
    """
    b, _, h, w = lum.shape
    if centre:
        lum = (lum - lum.mean((1, 2, 3), keepdim=True) + 50.0).clamp(0.0, 100.0)
    bin_idx = (lum[:, 0] * (bins / 100.0)).long().clamp_(0, bins - 1)  # (B, H, W)
    rows = torch.arange(h, device=lum.device) * grid // h
    cols = torch.arange(w, device=lum.device) * grid // w
    cell = (rows[:, None] * grid + cols[None, :])  # (H, W)
    flat = (torch.arange(b, device=lum.device)[:, None, None] * grid * grid + cell) * bins + bin_idx
    counts = torch.bincount(flat.reshape(-1), minlength=b * grid * grid * bins).view(b, grid * grid, bins)
    counts = counts.float()
    return counts / counts.sum(-1, keepdim=True).clamp_min(1.0)


def pool_global(feat: torch.Tensor, pool: str = "gem", p: float = 3.0) -> torch.Tensor:
    """``(B, C, h, w)`` conv features (>= 0) -> ``(B, C)`` L2-normalised global descriptor.

    GeM (p=3) sits between average pooling (robust, blurry) and max pooling (selective, fragile): it is the
    standard choice for retrieval with conv features (Radenovic et al., TPAMI 2019).
    """
    if pool == "avg":
        g = feat.mean((2, 3))
    elif pool == "max":
        g = feat.amax((2, 3))
    else:
        g = feat.clamp_min(1e-6).pow(p).mean((2, 3)).pow(1.0 / p)
    return F.normalize(g, dim=1)


def grid_features(feat: torch.Tensor, grid: int = 7) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, grid*grid, C)`` average-pooled cells, each L2-normalised."""
    cells = F.adaptive_avg_pool2d(feat, grid).flatten(2).transpose(1, 2)
    return F.normalize(cells, dim=2)


def quantise_unit(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Non-negative unit vectors (components in [0, 1]) -> uint8 (``round(255 x)``)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def dequantise_unit(q: np.ndarray) -> np.ndarray:
    """uint8 cells -> float32 unit vectors (renormalised after rounding)."""
    a = q.astype(np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-6)


class DescriptorExtractor:
    """Computes :class:`Descriptors` for batches of prepared gray images with VGG-19.

    Args:
        config: the descriptor recipe; ``weights_sha256`` is filled in from the weight file used.
        weights: VGG-19 weight file (``None``: env var / cache / download; ``"random"``: timing only).
        device: torch device for the forward pass.
    """

    def __init__(self, config: DescriptorConfig, *, weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu"):
        self.weights_path: str | None = None
        if weights == "random":
            sha = "random"
        else:
            path = resolve_weights(weights, config.variant)
            sha = file_sha256(path)
            weights = path
            self.weights_path = str(Path(path).resolve())
        if config.weights_sha256 and config.weights_sha256 != sha:
            from .errors import IndexMismatchError

            raise IndexMismatchError(
                f"the index was built with VGG-19 weights sha256 {config.weights_sha256[:12]}..., but the weights "
                f"given have sha256 {sha[:12]}...; pass the same --vgg-weights file or rebuild the index")
        self.config = DescriptorConfig.from_dict({**asdict(config), "weights_sha256": sha})
        self.device = resolve_device(device)
        self.net = VGG19Features(self.config.levels, weights=weights, variant=self.config.variant)
        self.net.to(self.device)

    @torch.inference_mode()
    def __call__(self, gray: torch.Tensor, lum: torch.Tensor) -> Descriptors:
        """``gray``, ``lum``: ``(B, 1, S, S)`` from :func:`prepare_gray` stacked."""
        cfg = self.config
        out = self.net(gray.to(self.device, non_blocking=True))
        if cfg.level in _FC:
            g = F.normalize(out[cfg.level].float(), dim=1)
        else:
            g = pool_global(out[cfg.level].float(), cfg.pool)
        grid = grid_features(out[cfg.grid_level].float(), cfg.grid)
        hist = luminance_histograms(lum, cfg.grid, cfg.bins, centre=cfg.hist_centre)
        cls = (out["fc8"].argmax(1).to(torch.int16).cpu().numpy() if cfg.classes
               else np.full(len(g), -1, np.int16))
        return Descriptors(g.cpu().numpy().astype(np.float32), quantise_unit(grid),
                           hist.numpy().astype(np.float16), cls)

    def describe(self, images: list[ImageInput]) -> Descriptors:
        """Convenience: load, prepare and describe a list of images in one batch."""
        prepared = [prepare_gray(im, self.config.size) for im in images]
        return self(torch.stack([p[0] for p in prepared]), torch.stack([p[1] for p in prepared]))
