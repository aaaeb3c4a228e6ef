"""``exemplar-color info``: versions, devices and where weights are looked for."""

from __future__ import annotations

import argparse
import json
import os
import platform

from .._version import __version__
from .options import add_json_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show versions, devices and weight locations",
                       epilog="Example:\n  exemplar-color info --json")
    add_json_option(p, "print the information as JSON on stdout", quiet=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..runtime import cache_dir
    from ..backbone.weights import WEIGHTS

    cache = cache_dir()
    info = {
        "exemplar_color": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "weights_env": os.environ.get("EXEMPLAR_COLOR_VGG_WEIGHTS"),
        "cache_dir": str(cache),
        "weights": {k: {"url": r.url, "cached": (cache / r.filename).is_file()} for k, r in WEIGHTS.items()},
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0
