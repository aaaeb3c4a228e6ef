"""Options shared by the commands, and the argument checks every command uses.

Each check is an argparse ``type``: a bad value ends in one line and exit 2 before anything is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..backbone import LEVELS
from ..correspondence import DEFAULT_LEVELS
from ..io import MAX_PIXELS, MAX_PIXELS_ENV

MATCH_LEVELS = tuple(lv for lv in LEVELS if lv.startswith("relu"))


def at_least(low: int, what: str = "a whole number") -> Callable[[str], int]:
    """An integer >= ``low`` (``--size 0``, ``-k 0``, ``--size -5`` are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "number"
    return parse


def pixel_count(text: str) -> int:
    """A pixel count: ``400000000``, ``400_000_000`` or ``4e8``."""
    try:
        value = int(float(text.replace("_", "")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def level_of(known: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"unknown VGG-19 level {text!r}; choose from {', '.join(known)}")
        return text

    parse.__name__ = "level"
    return parse


def existing_file(text: str) -> str:
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def index_folder(text: str) -> str:
    """An existing gallery index (a folder); ``index build`` makes one."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a gallery index folder")
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such gallery index (build one with "
                                         f"`exemplar-color index build GALLERY --index {text}`)")
    return text


def model_choice(text: str) -> str:
    if text in ("default", "analogy", "none", "None"):
        return text
    return existing_file(text)


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=at_least(16), default=256, help="working size: short side in pixels (default 256)")
    p.add_argument("--levels", nargs="+", metavar="LEVEL", default=None, type=level_of(MATCH_LEVELS),
                   help=f"VGG-19 levels to match (default: {' '.join(DEFAULT_LEVELS)}, or the model's)")
    p.add_argument("--vgg-weights", metavar="PATH", type=existing_file,
                   help="VGG-19 weight file (default: $EXEMPLAR_COLOR_VGG_WEIGHTS, the cache, or a download)")
    p.add_argument("--vgg-variant", default=None, choices=("torchvision", "caffe"),
                   help="preprocessing convention of the weights (default: the model's, else caffe)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--method", default="fast", choices=("fast", "patchmatch"),
                   help="correspondence search (patchmatch: the published schedule, ~100x slower)")
    add_max_pixels_option(p)


def add_max_pixels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=pixel_count, metavar="N", default=None,
                   help=f"refuse images with more pixels (default: ${MAX_PIXELS_ENV}, else {MAX_PIXELS:,}; "
                        f"memory grows with the scan: ~0.5 GB per 10 megapixels)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", metavar="default|analogy|PATH", type=model_choice,
                   help="default: the trained colorization sub-net shipped with the package; analogy (or none): "
                        "the analogy head, no network; PATH: your own checkpoint (.safetensors)")


def colorizer_from(args: argparse.Namespace, **extra):
    from ..pipeline import Colorizer

    return Colorizer(device=args.device, vgg_weights=args.vgg_weights, vgg_variant=args.vgg_variant,
                     levels=args.levels, size=args.size, method=args.method,
                     model=getattr(args, "model", "analogy"), **extra)


__all__ = ["at_least", "pixel_count", "level_of", "existing_file", "index_folder", "model_choice",
           "add_pipeline_options", "add_max_pixels_option", "add_model_option", "colorizer_from", "MATCH_LEVELS",
           "LEVELS"]
