"""Options shared by the commands that run the similarity sub-net (``match``, ``colorize``)."""

from __future__ import annotations

import argparse

from ..correspondence import DEFAULT_LEVELS


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=256, help="working size: short side in pixels (default 256)")
    p.add_argument("--levels", nargs="+", metavar="LEVEL", default=None,
                   help=f"VGG-19 levels to match (default: {' '.join(DEFAULT_LEVELS)}, or the model's)")
    p.add_argument("--vgg-weights", metavar="PATH", help="VGG-19 weight file (default: $EXEMPLAR_COLOR_VGG_WEIGHTS, "
                                                         "the cache, or a download)")
    p.add_argument("--vgg-variant", default=None, choices=("torchvision", "caffe"),
                   help="preprocessing convention of the weights (default: the model's, else caffe)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--method", default="fast", choices=("fast", "patchmatch"),
                   help="correspondence search (patchmatch: the published schedule, ~100x slower)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", metavar="default|analogy|PATH",
                   help="default: the trained colorization sub-net shipped with the package; analogy (or none): "
                        "the analogy head, no network; PATH: your own checkpoint (.safetensors)")


def colorizer_from(args: argparse.Namespace, **extra):
    from ..pipeline import Colorizer

    return Colorizer(device=args.device, vgg_weights=args.vgg_weights, vgg_variant=args.vgg_variant,
                     levels=args.levels, size=args.size, method=args.method,
                     model=getattr(args, "model", "analogy"), **extra)
