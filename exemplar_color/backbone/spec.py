"""VGG-19 as data: its layer configuration, the level names it is tapped at, and the two published input
conventions.

Both the network (:mod:`.features`) and the registry of weight files (:mod:`.weights`, whose records name the
levels a file covers and its preprocessing) need these; keeping them here lets the network import the registry
without an import cycle. No torch needed: the command line's ``--help`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["DEFAULT_LEVELS", "LEVELS", "LEVEL_CHANNELS", "LEVEL_STRIDE", "VARIANTS", "DEFAULT_VARIANT", "PREPROCESSING",
           "Preprocessing", "Variant", "CFG", "RELU_INDEX", "CONV_LEVELS", "levels_to"]

Variant = Literal["caffe", "torchvision"]
"""The two published preprocessing conventions of VGG-19 weights (see :data:`PREPROCESSING`)."""
VARIANTS: tuple[Variant, ...] = get_args(Variant)
DEFAULT_VARIANT: Variant = "caffe"  # the original Caffe VGG-19, as the paper used: wherever nothing else decides

# VGG-19 configuration "E": channels per conv, "M" for 2x2 max-pooling.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _conv_names() -> list[tuple[str, int]]:
    """(level name, index of its ReLU in ``features``) for every conv layer, e.g. ("relu3_1", 11)."""
    names, block, conv, idx = [], 1, 0, 0
    for v in CFG:
        if v == "M":
            block, conv, idx = block + 1, 0, idx + 1
        else:
            conv += 1
            names.append((f"relu{block}_{conv}", idx + 1))
            idx += 2
    return names


RELU_INDEX = dict(_conv_names())
LEVELS: tuple[str, ...] = tuple(RELU_INDEX) + ("fc6", "fc7", "fc8")
DEFAULT_LEVELS: tuple[str, ...] = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")  # the paper's five, deepest first
"""Every level the extractor can return: relu1_1 ... relu5_4, then the classifier's fc6, fc7 (after
ReLU) and fc8 (the 1000 ImageNet logits). fc levels need a file with the classifier layers."""

LEVEL_CHANNELS = {name: (64, 128, 256, 512, 512)[int(name[4]) - 1] for name in RELU_INDEX}
LEVEL_STRIDE = {name: 2 ** (int(name[4]) - 1) for name in RELU_INDEX}


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

CONV_LEVELS = tuple(RELU_INDEX)


def levels_to(last: str) -> tuple[str, ...]:
    """The conv levels from relu1_1 down to ``last``, finest first (what a sliced weight file covers)."""
    return CONV_LEVELS[: CONV_LEVELS.index(last) + 1]
