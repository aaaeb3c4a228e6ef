"""VGG-19 features by layer name, with both published preprocessing conventions and real weight management.

The network is defined here with torchvision's state-dict keys (``features.N.weight``) so torchvision's
published file loads directly, without depending on torchvision (its PyPI wheels do not import with a
CPU-only torch). ``VGG19Features`` runs only up to the deepest level asked for.

Weights are resolved in this order: an explicit ``weights=`` path, ``$EXEMPLAR_COLOR_VGG_WEIGHTS``, the
cache (``$EXEMPLAR_COLOR_HOME``, default ``~/.cache/exemplar_color``), then a one-time download checked
against the hash in the file name. Files are always read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
from torch import nn

from .errors import WeightsError
from .io import atomic_write

__all__ = [
    "LEVELS",
    "LEVEL_CHANNELS",
    "LEVEL_STRIDE",
    "WEIGHTS",
    "WeightsRecord",
    "VGG19Features",
    "cache_dir",
    "resolve_weights",
    "load_state_dict",
]

Variant = Literal["torchvision", "caffe"]

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
class WeightsRecord:
    """Where a published weight file lives and how its network expects input."""

    url: str
    variant: Variant
    note: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """torchvision's convention: the first hex digits of the SHA-256 are part of the file name."""
        return self.filename.rsplit("-", 1)[-1].split(".")[0]


WEIGHTS: dict[str, WeightsRecord] = {
    "torchvision": WeightsRecord(
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        variant="torchvision",
        note="torchvision ImageNet VGG-19: RGB in [0,1], mean (0.485,0.456,0.406), std (0.229,0.224,0.225)",
    ),
    "caffe": WeightsRecord(
        url="https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
        variant="caffe",
        note="the original Caffe VGG-19 converted to PyTorch: BGR, 0..255, minus mean (103.939,116.779,123.68)",
    ),
}

_TV_MEAN = (0.485, 0.456, 0.406)
_TV_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def cache_dir() -> Path:
    """Where downloaded weights live: ``$EXEMPLAR_COLOR_HOME`` or ``~/.cache/exemplar_color``."""
    return Path(os.environ.get("EXEMPLAR_COLOR_HOME", Path.home() / ".cache" / "exemplar_color"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(record: WeightsRecord, dest: Path) -> None:
    try:
        with atomic_write(dest) as tmp:
            with urllib.request.urlopen(record.url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            digest = _sha256(tmp)
            if not digest.startswith(record.hash_prefix):
                raise WeightsError(
                    f"downloaded {record.url} but its SHA-256 {digest[:16]}... does not start with "
                    f"{record.hash_prefix}; the file was discarded"
                )
    except WeightsError:
        raise
    except Exception as e:  # network down, proxy, disk full ...
        raise WeightsError(
            f"could not download the VGG-19 weights ({e}). Download {record.url} yourself and put it at "
            f"{dest} (or pass vgg_weights=/--vgg-weights PATH, or set EXEMPLAR_COLOR_VGG_WEIGHTS)"
        ) from None


def resolve_weights(weights: str | os.PathLike | None = None, variant: Variant = "torchvision",
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
        raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {sorted(WEIGHTS)}")
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
        reason = str(e).split("\n")[0]
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
    torchvision (RGB, mean/std) or caffe (BGR, 0..255, mean-subtracted), as the weights expect.

    Args:
        levels: names from :data:`LEVELS`, e.g. ``("relu3_1", "relu2_1", "relu1_1")``.
        weights: a weight file; ``None`` resolves the default (env var, cache, download);
            ``"random"`` keeps random initialisation (for timing only: the features mean nothing).
        variant: ``"torchvision"`` or ``"caffe"``: preprocessing and the default file.

    Example:
        >>> net = VGG19Features(levels=["relu1_1"], weights="random")
        >>> net(torch.rand(1, 1, 32, 32))["relu1_1"].shape
        torch.Size([1, 64, 32, 32])
    """

    def __init__(self, levels: Sequence[str], *, weights: str | os.PathLike | None = None,
                 variant: Variant = "torchvision", download: bool = True):
        super().__init__()
        levels = list(dict.fromkeys(levels))
        unknown = [lv for lv in levels if lv not in LEVELS]
        if not levels or unknown:
            raise ValueError(f"unknown VGG-19 levels {unknown or levels}; choose from {', '.join(LEVELS)}")
        if variant not in WEIGHTS:
            raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {sorted(WEIGHTS)}")
        self.levels = tuple(levels)
        self.variant: Variant = variant
        fc = [lv for lv in levels if lv in _CLASSIFIER_INDEX]
        conv_last = len(_CFG) * 2 if fc else max(_RELU_INDEX[lv] for lv in levels)
        self.features = _make_features(min(conv_last, 36))
        self.classifier = _make_classifier(max(_CLASSIFIER_INDEX[lv] for lv in fc)) if fc else None
        self._taps = {_RELU_INDEX[lv]: lv for lv in levels if lv in _RELU_INDEX}
        self._fc_taps = {_CLASSIFIER_INDEX[lv]: lv for lv in fc}
        if weights != "random":
            self._load(resolve_weights(weights, variant, download))
        self.requires_grad_(False)
        self.eval()
        self._set_normalisation()

    def _set_normalisation(self) -> None:
        if self.variant == "torchvision":
            mean, scale = torch.tensor(_TV_MEAN), 1.0 / torch.tensor(_TV_STD)
        else:
            # preprocess flips the input to BGR before subtracting, so the mean stays in BGR order
            mean, scale = torch.tensor(_CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    @property
    def input_gain(self) -> float:
        """How much larger this variant's inputs are than torchvision's (1; Caffe's 0..255 inputs: ~57.6).
        Features grow about linearly with it, so a loss on features divides it out to weigh the same
        whichever convention the backbone uses."""
        return float(self.scale.mean() / (1.0 / torch.tensor(_TV_STD)).mean())

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
        if self.variant == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean.to(x.dtype)) * self.scale.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features ``{level: (B, C, H / stride, W / stride)}`` for every requested level."""
        h = self.preprocess(x)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._taps:
                out[self._taps[i]] = h
        if self.classifier is not None:
            h = torch.flatten(nn.functional.adaptive_avg_pool2d(h, 7), 1)
            for i, layer in enumerate(self.classifier):
                h = layer(h)
                if i in self._fc_taps:
                    out[self._fc_taps[i]] = h
        return {lv: out[lv] for lv in self.levels}
