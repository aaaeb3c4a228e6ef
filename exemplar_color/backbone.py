"""VGG-19 features by layer name, with both published preprocessing conventions and real weight management.

The network is defined here with torchvision's state-dict keys (``features.N.weight``) so torchvision's
published file loads directly, without depending on torchvision (its PyPI wheels do not import with a
CPU-only torch). ``VGG19Features`` runs only up to the deepest level asked for.

Weights are resolved in this order: an explicit ``weights=`` path, ``$EXEMPLAR_COLOR_VGG_WEIGHTS``, the
cache (``$EXEMPLAR_COLOR_HOME``, default ``~/.cache/exemplar_color``), then a one-time download checked
against the hash in the file name. Files are always read with ``torch.load(weights_only=True)``, and no
error message passes on torch's advice to load them otherwise.

Published files are described by :class:`WeightsRecord` (url, SHA-256, preprocessing, layers covered) in
:data:`KNOWN_WEIGHTS`. A file is recognised by its SHA-256 (:func:`identify_weights`; computed once and
remembered, see :func:`exemplar_color.artifacts.file_sha256`), so its convention is chosen automatically
and an explicit variant that contradicts it is refused (:func:`choose_variant`).
"""

from __future__ import annotations

import os
import pickle
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence, get_args

import torch
from torch import nn

from .artifacts import file_sha256, sha256_of
from .errors import WeightsError, without_unsafe_advice
from .io import atomic_write
from .runtime import cache_dir

__all__ = [
    "LEVELS",
    "LEVEL_CHANNELS",
    "LEVEL_STRIDE",
    "WEIGHTS",
    "KNOWN_WEIGHTS",
    "VARIANTS",
    "PREPROCESSING",
    "Preprocessing",
    "Variant",
    "WeightsRecord",
    "identify_weights",
    "choose_variant",
    "VGG19Features",
    "cache_dir",
    "resolve_weights",
    "load_state_dict",
    "Precision",
    "MIXED_FROM",
]

Variant = Literal["caffe", "torchvision"]
"""The two published preprocessing conventions of VGG-19 weights (see :data:`PREPROCESSING`)."""
VARIANTS: tuple[Variant, ...] = get_args(Variant)
DEFAULT_VARIANT: Variant = "torchvision"  # of VGG19Features when neither the caller nor the file says

Precision = Literal["float32", "mixed"]
"""How :class:`VGG19Features` computes: all float32, or ``mixed`` (bfloat16 beyond :data:`MIXED_FROM`)."""
MIXED_FROM = "relu2_1"  # the last level a mixed-precision pass computes in float32

# VGG-19 configuration "E": channels per conv, "M" for 2x2 max-pooling.
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _conv_names() -> list[tuple[str, int]]:
    """(level name, index of its ReLU in ``features``) for every conv layer, e.g. ("relu3_1", 11)."""
    names, block, conv, idx = [], 1, 0, 0
    for v in _CFG:
        if v == "M":
            block, conv, idx = block + 1, 0, idx + 1
        else:
            conv += 1
            names.append((f"relu{block}_{conv}", idx + 1))
            idx += 2
    return names


_RELU_INDEX = dict(_conv_names())
LEVELS: tuple[str, ...] = tuple(_RELU_INDEX) + ("fc6", "fc7", "fc8")
"""Every level the extractor can return: relu1_1 ... relu5_4, then the classifier's fc6, fc7 (after
ReLU) and fc8 (the 1000 ImageNet logits). fc levels need a file with the classifier layers."""

LEVEL_CHANNELS = {name: (64, 128, 256, 512, 512)[int(name[4]) - 1] for name in _RELU_INDEX}
LEVEL_STRIDE = {name: 2 ** (int(name[4]) - 1) for name in _RELU_INDEX}
_CLASSIFIER_INDEX = {"fc6": 1, "fc7": 4, "fc8": 6}  # module index in torchvision's classifier


@dataclass(frozen=True)
class Preprocessing:
    """How a network expects its input: ``[0, 1]`` sRGB is put in ``channels`` order, multiplied by ``scale``,
    then ``(x - mean) / std`` per channel (``mean`` and ``std`` in that order and those units)."""

    channels: Literal["RGB", "BGR"]
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


PREPROCESSING: dict[Variant, Preprocessing] = {
    "torchvision": Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
}

_CONV_LEVELS = tuple(_RELU_INDEX)


def _levels_to(last: str) -> tuple[str, ...]:
    return _CONV_LEVELS[: _CONV_LEVELS.index(last) + 1]


@dataclass(frozen=True)
class WeightsRecord:
    """A published VGG-19 weight file: where it lives, its SHA-256, how its network expects input, and the
    levels it covers.

    ``sha256`` is the full digest when it is known; for the files published under torchvision's naming rule
    only the first hex digits are known offline (``hash_prefix``, from the file name), and a file is that
    record when its digest starts with them.
    """

    name: str
    variant: Variant
    layers: tuple[str, ...]
    note: str
    url: str | None = None
    sha256: str | None = None
    file_name: str | None = None

    @property
    def filename(self) -> str:
        return self.file_name or (self.url or "").rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """torchvision's convention: the first hex digits of the SHA-256 are part of the file name."""
        return self.sha256 or self.filename.rsplit("-", 1)[-1].split(".")[0]

    @property
    def preprocessing(self) -> Preprocessing:
        return PREPROCESSING[self.variant]

    def matches(self, digest: str) -> bool:
        """Whether a file with this SHA-256 is this record's file."""
        return digest == self.sha256 if self.sha256 else digest.startswith(self.hash_prefix)


KNOWN_WEIGHTS: tuple[WeightsRecord, ...] = (
    WeightsRecord("torchvision", "torchvision", LEVELS, url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                  note="torchvision ImageNet VGG-19 (IMAGENET1K_V1), full network with the classifier"),
    WeightsRecord("caffe", "caffe", LEVELS, url="https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
                  note="the original Caffe VGG-19 (the paper's) converted to PyTorch, with the classifier"),
    WeightsRecord("caffe-features-q8", "caffe", _CONV_LEVELS, file_name="vgg19-caffe-features-0-34-q8.pth",
                  sha256="06e8fc527cbffe81c628f55020e4fad6878132c9fd9c0db2cf9fea672baf8320",
                  note="Caffe VGG-19 conv1_1..conv5_4 as float16, conv4/conv5 kernels 8-bit quantized"),
    WeightsRecord("torchvision-features-0-10", "torchvision", _levels_to("relu3_1"),
                  file_name="vgg19-torchvision-features-0-10.pth",
                  sha256="12282f27ffb0f9f05d8d1b3dbbabd5b0b45d031ea323eebc9ecfed11eebd1d76",
                  note="torchvision VGG-19 conv1_1..conv3_1 (a slice for tests)"),
    WeightsRecord("caffe-features-0-16", "caffe", _levels_to("relu3_4"), file_name="vgg19-caffe-features-0-16.pth",
                  sha256="11cd43569cf92edde690293fbfdc2e15361d0f5f3ffb12512e58760458da45da",
                  note="Caffe VGG-19 conv1_1..conv3_4 (a slice for tests)"),
)
"""Every published weight file the library recognises by its SHA-256."""

WEIGHTS: dict[Variant, WeightsRecord] = {r.variant: r for r in KNOWN_WEIGHTS if r.url}
"""The file downloaded for each variant when none is given."""


def identify_weights(path: str | os.PathLike) -> WeightsRecord | None:
    """The published file ``path`` is (by its SHA-256, remembered across runs), or None."""
    digest = file_sha256(path)
    return next((r for r in KNOWN_WEIGHTS if r.matches(digest)), None)


def choose_variant(weights: str | os.PathLike | None, variant: str | None,
                   default: Variant | None = DEFAULT_VARIANT) -> Variant | None:
    """The preprocessing convention for a weight file: a recognised published file's own (an explicit
    ``variant`` that contradicts it is refused, naming both), else ``variant``, else ``default``.
    ``weights=None`` looks at ``$EXEMPLAR_COLOR_VGG_WEIGHTS``."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if weights is None:
        weights = os.environ.get("EXEMPLAR_COLOR_VGG_WEIGHTS") or None
    record = identify_weights(weights) if weights is not None and weights != "random" and \
        Path(weights).expanduser().is_file() else None
    if record is None:
        return variant or default  # type: ignore[return-value]
    if variant is not None and variant != record.variant:
        raise WeightsError(
            f"{weights}: this is the published {record.variant} VGG-19 file {record.filename!r} "
            f"({_describe_prep(record.preprocessing)}), but the {variant} convention was asked for; "
            f"use --vgg-variant {record.variant} (vgg_variant={record.variant!r}) with this file")
    return record.variant


def _describe_prep(p: Preprocessing) -> str:
    scale = "[0,1]" if p.scale == 1 else f"0..{p.scale:g}"
    std = "" if set(p.std) == {1.0} else f", std {p.std}"
    return f"{p.channels} in {scale}, mean {p.mean}{std}"


def _download(record: WeightsRecord, dest: Path) -> None:
    try:
        with atomic_write(dest) as tmp:
            with urllib.request.urlopen(record.url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            digest = sha256_of(tmp)
            if not record.matches(digest):
                raise WeightsError(
                    f"downloaded {record.url} but its SHA-256 {digest[:16]}... is not the published "
                    f"{record.hash_prefix[:16]}...; the file was discarded"
                )
    except WeightsError:
        raise
    except Exception as e:  # network down, proxy, disk full ...
        raise WeightsError(
            f"could not download the VGG-19 weights ({e}). Download {record.url} yourself and put it at "
            f"{dest} (or pass vgg_weights=/--vgg-weights PATH, or set EXEMPLAR_COLOR_VGG_WEIGHTS)"
        ) from None


def resolve_weights(weights: str | os.PathLike | None = None, variant: Variant = DEFAULT_VARIANT,
                    download: bool = True) -> Path:
    """Path of the weight file to use; downloads the published file into the cache only when needed."""
    if weights is None:
        weights = os.environ.get("EXEMPLAR_COLOR_VGG_WEIGHTS") or None
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsError(f"{p}: VGG-19 weight file not found")
        return p
    if variant not in WEIGHTS:
        raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {', '.join(VARIANTS)}")
    record = WEIGHTS[variant]
    dest = cache_dir() / record.filename
    if not dest.is_file():
        if not download:
            raise WeightsError(f"VGG-19 weights not found at {dest}; download {record.url} and put it there")
        _download(record, dest)
    return dest


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a VGG-19 state dict safely (``weights_only=True``), accepting a few common key layouts."""
    p = Path(path)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError):  # torch's message advises unsafe loading: not repeated
            raise WeightsError(f"{p}: not a readable PyTorch weight file (not a plain state dict of tensors; "
                               f"refused unread, since loading it otherwise could run code)") from None
        reason = without_unsafe_advice(str(e).split("\n")[0]) or "unreadable"
        raise WeightsError(f"{p}: not a readable PyTorch weight file ({type(e).__name__}: {reason})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{p}: expected a state dict of tensors")
    return {k.removeprefix("module.").removeprefix("vgg."): v for k, v in sd.items()}


def _make_features(last_index: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _CFG:
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
    inv = {idx - 1: name.replace("relu", "conv") for name, idx in _RELU_INDEX.items()}
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
            default): a published file's own convention, recognised by its SHA-256, else torchvision. An
            explicit variant that contradicts a recognised file raises :class:`WeightsError`.

    Example:
        >>> net = VGG19Features(levels=["relu1_1"], weights="random")
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
        self.levels = tuple(levels)
        self.variant: Variant = variant
        fc = [lv for lv in levels if lv in _CLASSIFIER_INDEX]
        conv_last = len(_CFG) * 2 if fc else max(_RELU_INDEX[lv] for lv in levels)
        self.features = _make_features(min(conv_last, 36))
        self.classifier = _make_classifier(max(_CLASSIFIER_INDEX[lv] for lv in fc)) if fc else None
        self._taps = {_RELU_INDEX[lv]: lv for lv in levels if lv in _RELU_INDEX}
        self._fc_taps = {_CLASSIFIER_INDEX[lv]: lv for lv in fc}
        if path is not None:
            self._load(path)
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

    def _load(self, path: Path) -> None:
        sd = load_state_dict(path)
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
                border_until: str | None = None) -> dict[str, torch.Tensor]:
        """Features ``{level: (B, C, H / stride, W / stride)}`` for every requested level.

        ``precision="mixed"``: float32 up to :data:`MIXED_FROM`, bfloat16 (channels-last) beyond: 2.2x faster on
        a CPU with native bfloat16, while the fine levels that place matches to the pixel stay exact
        (levels beyond it come back as bfloat16).

        ``border``: ``x`` carries that many pixels of added context on each side (a multiple of every tapped
        level's stride); each level comes back cropped to the image itself. With ``border_until``, the context
        is dropped right after that level, so the deeper layers see the image's own edges."""
        if border and any(border % LEVEL_STRIDE[lv] for lv in self._taps.values()):
            raise ValueError(f"border {border} is not a multiple of the strides of levels {list(self.levels)}")
        h = self.preprocess(x)
        switch = _RELU_INDEX[MIXED_FROM] if precision == "mixed" else len(self.features)
        if precision == "mixed":
            h = h.contiguous(memory_format=torch.channels_last)
        elif precision != "float32":
            raise ValueError(f"unknown precision {precision!r}; use 'float32' or 'mixed'")
        out: dict[str, torch.Tensor] = {}
        stride, until = 1, _RELU_INDEX[border_until] if border_until else None
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
