"""The VGG-19 weight files we know, and how a file is found and read.

Published files are described by :class:`WeightsRecord` (url, SHA-256, preprocessing, layers covered) in
:data:`KNOWN_WEIGHTS`. A file is recognised by its SHA-256 (:func:`identify_weights`; computed once and
remembered, see :func:`exemplar_color.artifacts.file_sha256`), so its convention is chosen automatically
and an explicit variant that contradicts it is refused (:func:`choose_variant`).

Weights are resolved in this order: an explicit ``weights=`` path, ``$EXEMPLAR_COLOR_VGG_WEIGHTS``, the
cache (``$EXEMPLAR_COLOR_HOME``, default ``~/.cache/exemplar_color``), then a one-time download of
:data:`WEIGHTS` checked against the hash in the file name. Files are always read with
``torch.load(weights_only=True)``, and no error message passes on torch's advice to load them otherwise.
The network that uses them is :mod:`.features`.
"""

from __future__ import annotations

import os
import pickle
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ..artifacts import file_sha256, sha256_of
from ..errors import WeightsError, without_unsafe_advice
from ..io import atomic_write
from ..runtime import cache_dir
from .spec import CONV_LEVELS, DEFAULT_VARIANT, LEVELS, PREPROCESSING, VARIANTS, Preprocessing, Variant, levels_to

__all__ = ["WEIGHTS", "KNOWN_WEIGHTS", "WeightsRecord", "identify_weights", "choose_variant", "guess_variant",
           "resolve_weights", "load_state_dict"]


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
    WeightsRecord("caffe-features-q8", "caffe", CONV_LEVELS, file_name="vgg19-caffe-features-0-34-q8.pth",
                  sha256="06e8fc527cbffe81c628f55020e4fad6878132c9fd9c0db2cf9fea672baf8320",
                  note="Caffe VGG-19 conv1_1..conv5_4 as float16, conv4/conv5 kernels 8-bit quantized"),
    WeightsRecord("torchvision-features-0-10", "torchvision", levels_to("relu3_1"),
                  file_name="vgg19-torchvision-features-0-10.pth",
                  sha256="12282f27ffb0f9f05d8d1b3dbbabd5b0b45d031ea323eebc9ecfed11eebd1d76",
                  note="torchvision VGG-19 conv1_1..conv3_1 (a slice for tests)"),
    WeightsRecord("caffe-features-0-16", "caffe", levels_to("relu3_4"), file_name="vgg19-caffe-features-0-16.pth",
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
    ``variant`` that contradicts it is refused, naming both), else ``variant``, else an unrecognised file's
    own as its first layer shows it (:func:`guess_variant`, with a warning), else ``default``.
    ``weights=None`` looks at ``$EXEMPLAR_COLOR_VGG_WEIGHTS``."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown VGG-19 variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if weights is None:
        weights = os.environ.get("EXEMPLAR_COLOR_VGG_WEIGHTS") or None
    readable = weights is not None and weights != "random" and Path(weights).expanduser().is_file()
    record = identify_weights(weights) if readable else None
    if record is None:
        if variant is None and readable:  # an unrecognised file: its own first layer says which
            return guess_variant(Path(weights).expanduser())
        return variant or default  # type: ignore[return-value]
    if variant is not None and variant != record.variant:
        raise WeightsError(
            f"{weights}: this is the published {record.variant} VGG-19 file {record.filename!r} "
            f"({_describe_prep(record.preprocessing)}), but the {variant} convention was asked for; "
            f"use --vgg-variant {record.variant} (vgg_variant={record.variant!r}) with this file")
    return record.variant


def guess_variant(path: Path) -> Variant:
    """The preprocessing convention of an unrecognised VGG-19 file, read from its first convolution, with a
    warning that says so. Caffe's VGG-19 takes BGR, torchvision's RGB, and the two published files' first-layer
    filters weigh the blue channel above the red one (Caffe, channel 0 > channel 2 by 0.0125 on average) or
    below it (torchvision, by 0.0115): the order of the channels shows in the file."""
    import warnings

    first = load_state_dict(path).get("features.0.weight")
    if first is None or first.dim() != 4 or first.shape[1] != 3:
        return DEFAULT_VARIANT
    per_channel = first.float().mean((0, 2, 3))
    guess: Variant = "caffe" if float(per_channel[0] - per_channel[2]) > 0 else "torchvision"
    warnings.warn(f"{path}: not a published VGG-19 file; its first layer reads {'BGR' if guess == 'caffe' else 'RGB'}"
                  f", so the {guess} preprocessing is used (say --vgg-variant / vgg_variant= to choose)", stacklevel=3)
    return guess


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
