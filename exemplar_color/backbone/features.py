"""VGG-19 features by layer name, under either published preprocessing convention.

The network is defined here with torchvision's state-dict keys (``features.N.weight``) so torchvision's
published file loads directly, without depending on torchvision (its PyPI wheels do not import with a
CPU-only torch). ``VGG19Features`` runs only up to the deepest level asked for.

Which weight files exist, how one is found, recognised and read safely is :mod:`.weights`; the layer
configuration, level names and input conventions are :mod:`.spec`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
from torch import nn

from ..errors import WeightsError
from .spec import CFG, DEFAULT_VARIANT, LEVEL_STRIDE, LEVELS, PREPROCESSING, RELU_INDEX, VARIANTS, Variant
from .weights import choose_variant, load_state_dict, resolve_weights

__all__ = ["VGG19Features", "Precision", "MIXED_FROM"]

Precision = Literal["float32", "mixed"]
"""How :class:`VGG19Features` computes: all float32, or ``mixed`` (bfloat16 beyond :data:`MIXED_FROM`)."""
MIXED_FROM = "relu2_1"  # the last level a mixed-precision pass computes in float32

_CLASSIFIER_INDEX = {"fc6": 1, "fc7": 4, "fc8": 6}  # module index in torchvision's classifier


def _make_features(last_index: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in CFG:
        if len(layers) > last_index:
            break
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = v
    return nn.Sequential(*layers[: last_index + 1])


def _crop(x: torch.Tensor, c: int) -> torch.Tensor:
    return x[..., c:x.shape[-2] - c, c:x.shape[-1] - c] if c else x


def _make_classifier(last_index: int) -> nn.Sequential:
    layers = [nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
              nn.Dropout(), nn.Linear(4096, 1000)]
    return nn.Sequential(*layers[: last_index + 1])


def _describe(keys: Iterable[str]) -> str:
    convs = sorted({int(k.split(".")[1]) for k in keys if k.startswith("features.") and k.endswith(".weight")})
    inv = {idx - 1: name.replace("relu", "conv") for name, idx in RELU_INDEX.items()}
    names = [inv.get(i, f"features.{i}") for i in convs]
    fc = sorted({k.split(".")[1] for k in keys if k.startswith("classifier.") and k.endswith(".weight")})
    out = f"{names[0]}..{names[-1]} ({len(names)} conv layers)" if names else "no VGG conv layers"
    return out + (f" + classifier layers {fc}" if fc else "")


class VGG19Features(nn.Module):
    """VGG-19 returning the requested named levels in one pass, stopping at the deepest one.

    Input: ``(B, 3, H, W)`` sRGB or ``(B, 1, H, W)`` gray, in [0, 1]; gray is repeated to 3 channels
    (how the published system shows luminance to VGG). Preprocessing follows ``variant``:
    torchvision (RGB, mean/std) or caffe (BGR, 0..255, mean-subtracted), as the weights expect
    (:data:`PREPROCESSING`).

    Args:
        levels: names from :data:`LEVELS`, e.g. ``("relu3_1", "relu2_1", "relu1_1")``.
        weights: a weight file; ``None`` resolves the default (env var, cache, download);
            ``"random"`` keeps random initialisation (for timing only: the features mean nothing).
        variant: ``"torchvision"`` or ``"caffe"``: preprocessing and the default file. ``None`` (the
            default): a published file's own convention, recognised by its SHA-256, else an unrecognised
            file's as its first layer shows it, else :data:`~.spec.DEFAULT_VARIANT` (Caffe). An explicit
            variant that contradicts a recognised file raises :class:`WeightsError`.

    Example:
        >>> net = VGG19Features(levels=["relu1_1"], weights="random", variant="torchvision")
        >>> net(torch.rand(1, 1, 32, 32))["relu1_1"].shape
        torch.Size([1, 64, 32, 32])
    """

    def __init__(self, levels: Sequence[str], *, weights: str | os.PathLike | None = None,
                 variant: Variant | None = None, download: bool = True):
        super().__init__()
        levels = list(dict.fromkeys(levels))
        unknown = [lv for lv in levels if lv not in LEVELS]
        if not levels or unknown:
            raise ValueError(f"unknown VGG-19 levels {unknown or levels}; choose from {', '.join(LEVELS)}")
        path = None
        if weights == "random":
            variant = variant or DEFAULT_VARIANT
        else:
            variant = choose_variant(weights, variant) or DEFAULT_VARIANT
            path = resolve_weights(weights, variant, download)
            variant = choose_variant(path, variant) or DEFAULT_VARIANT  # a downloaded or cached file too
        if variant not in VARIANTS:
            raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {', '.join(VARIANTS)}")
        state = None if path is None else load_state_dict(path)  # the file read with its decision, then built
        self.levels = tuple(levels)
        self.variant: Variant = variant
        fc = [lv for lv in levels if lv in _CLASSIFIER_INDEX]
        conv_last = len(CFG) * 2 if fc else max(RELU_INDEX[lv] for lv in levels)
        self.features = _make_features(min(conv_last, 36))
        self.classifier = _make_classifier(max(_CLASSIFIER_INDEX[lv] for lv in fc)) if fc else None
        self._taps = {RELU_INDEX[lv]: lv for lv in levels if lv in RELU_INDEX}
        self._fc_taps = {_CLASSIFIER_INDEX[lv]: lv for lv in fc}
        if state is not None:
            self._load(path, state)  # type: ignore[arg-type]
        self.requires_grad_(False)
        self.eval()
        self._set_normalisation()

    def _set_normalisation(self) -> None:
        # (scale * x - mean) / std == (x - mean / scale) * (scale / std); x already in the record's channel order
        prep = PREPROCESSING[self.variant]
        mean = torch.tensor(prep.mean) / prep.scale
        scale = prep.scale / torch.tensor(prep.std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    @property
    def input_gain(self) -> float:
        """How much larger this variant's inputs are than torchvision's (1; Caffe's 0..255 inputs: ~57.6).
        Features grow about linearly with it, so a loss on features divides it out to weigh the same
        whichever convention the backbone uses."""
        return float(self.scale.mean() / (1.0 / torch.tensor(PREPROCESSING["torchvision"].std)).mean())

    def _load(self, path: Path, sd: dict[str, torch.Tensor]) -> None:
        need = {k for k in self.state_dict() if not k.startswith(("mean", "scale"))}
        missing = sorted(need - set(sd))
        if missing:
            raise WeightsError(
                f"{path}: the file has {_describe(sd)}, but levels {list(self.levels)} need "
                f"{_describe(need)}; missing {len(missing)} tensors (e.g. {missing[0]}). Use a full VGG-19 "
                f"file or only levels the file covers"
            )
        bad = [k for k in need if sd[k].shape != self.state_dict()[k].shape]
        if bad:
            raise WeightsError(f"{path}: tensor {bad[0]} has shape {tuple(sd[bad[0]].shape)}, "
                               f"expected {tuple(self.state_dict()[bad[0]].shape)}: not a VGG-19 file")
        self.load_state_dict({k: sd[k] for k in need}, strict=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` RGB/gray -> the normalised input this variant's weights expect."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1 or 3, H, W) in [0, 1], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if PREPROCESSING[self.variant].channels == "BGR":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean.to(x.dtype)) * self.scale.to(x.dtype)

    def forward(self, x: torch.Tensor, precision: Precision = "float32", border: int = 0,
                border_until: str | None = None, channels_last: bool = True) -> dict[str, torch.Tensor]:
        """Features ``{level: (B, C, H / stride, W / stride)}`` for every requested level.

        ``precision="mixed"``: float32 up to :data:`MIXED_FROM`, bfloat16 beyond: 2.2x faster on
        a CPU with native bfloat16, while the fine levels that place matches to the pixel stay exact
        (levels beyond it come back as bfloat16).

        ``border``: ``x`` carries that many pixels of added context on each side (a multiple of every tapped
        level's stride); each level comes back cropped to the image itself. With ``border_until``, the context
        is dropped right after that level, so the deeper layers see the image's own edges.

        ``channels_last`` (default): convolutions in channels-last layout, 1.3x faster in float32 on CPU (0.78-0.92
        -> 0.56-0.71 CPU s for a 256 pair with its context border; features equal to 1e-4 of their scale);
        ``False`` gives the plain NCHW pass the benchmarks' floor is defined by."""
        if border and any(border % LEVEL_STRIDE[lv] for lv in self._taps.values()):
            raise ValueError(f"border {border} is not a multiple of the strides of levels {list(self.levels)}")
        if precision not in ("float32", "mixed"):
            raise ValueError(f"unknown precision {precision!r}; use 'float32' or 'mixed'")
        switch = RELU_INDEX[MIXED_FROM] if precision == "mixed" else len(self.features)
        h = self.preprocess(x)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        stride, until = 1, RELU_INDEX[border_until] if border_until else None
        for i, layer in enumerate(self.features):
            with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=i > switch):
                h = layer(h)
            stride *= 2 if isinstance(layer, nn.MaxPool2d) else 1
            if i in self._taps:
                out[self._taps[i]] = _crop(h, border // stride)
            if i == until:
                h, border = _crop(h, border // stride), 0
        if self.classifier is not None:
            h = torch.flatten(nn.functional.adaptive_avg_pool2d(h, 7), 1)
            for i, layer in enumerate(self.classifier):
                h = layer(h)
                if i in self._fc_taps:
                    out[self._fc_taps[i]] = h
        return {lv: out[lv] for lv in self.levels}
