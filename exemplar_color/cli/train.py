"""``exemplar-color train``: train the colorization sub-net from a pair cache.

Settings come from typed defaults, then ``--config FILE.json``, then the flags given, then ``--set
key=value`` overrides; the result is saved as ``RUN_DIR/config.json`` and in every checkpoint. Runs
resume from ``RUN_DIR`` by default. The same command runs on CPU, one GPU, or many through
``torchrun --nproc_per_node=N -m exemplar_color.cli.main train ...``.
Final metrics go to stdout (JSON), progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

_FLAGS: dict[str, tuple[type, str]] = {
    "epochs": (int, "epochs (default 10)"),
    "batch_size": (int, "global batch, half per branch (default 256, the paper's 128 + 128)"),
    "lr": (float, "Adam learning rate (default 1e-4)"),
    "lr_step_epochs": (int, "decay the lr every N epochs (default 3)"),
    "lr_gamma": (float, "decay factor (default 0.1)"),
    "alpha": (float, "weight of the perceptual loss (default 0.005)"),
    "reference_chroma": (float, "weight of a chrominance loss on the real-reference branch too (default 0)"),
    "saturation": (float, "weight of the per-image colourfulness-matching loss on that branch (default 0)"),
    "perceptual_level": (str, "VGG-19 level of the perceptual loss (default relu5_1)"),
    "vgg_weights": (str, "VGG-19 weight file for the perceptual loss"),
    "width": (float, "network channel multiplier (default 1.0: ~34 M parameters)"),
    "seed": (int, "seed of initialisation and data order (default 0)"),
    "checkpoint_every": (int, "steps between checkpoints (default 1000)"),
    "keep_checkpoints": (int, "checkpoints kept (default 3)"),
    "val_fraction": (float, "hold out this fraction of targets when the manifest has no val split"),
    "val_every": (int, "validate every N steps (default 0: every epoch)"),
    "log_every": (int, "steps between metric rows (default 10)"),
    "max_steps": (int, "stop after N steps (smoke runs)"),
    "num_workers": (int, "data-loading worker processes (default 2)"),
    "amp": (str, "mixed precision on CUDA: auto, bf16, fp16, off (default auto)"),
    "device": (str, "cpu, cuda, cuda:1 ... (default auto)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the colorization sub-net", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: exemplar-color train --pairs pairs.csv --cache cache/ --out runs/r1 --width 0.25 "
               "--batch-size 16 --perceptual-level relu3_1 --vgg-weights vgg-slice.pth")
    p.add_argument("--pairs", required=True, help="pair manifest (CSV or JSON); split=val rows are held out")
    p.add_argument("--cache", required=True, help="cache folder built by `exemplar-color cache build`")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a run)")
    p.add_argument("--config", help="JSON file of settings")
    for name, (typ, help_) in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting")
    p.add_argument("--augment", action="store_true", default=None,
                   help="random flip, crop and scale of every record (the shipped model's recipe)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _coerce(name: str, value: str, types: dict[str, Any]) -> Any:
    t = types[name]
    if value.lower() in ("none", "null"):
        return None
    if "bool" in str(t):
        return value.lower() in ("1", "true", "yes", "on")
    if "int" in str(t) and "float" not in str(t):
        return int(value)
    if "float" in str(t):
        return float(value)
    return value


def resolve_config(args: argparse.Namespace) -> "Any":
    """Defaults < --config file < flags given < --set overrides."""
    from ..training.trainer import TrainConfig

    settings: dict[str, Any] = {}
    if args.config:
        settings.update(json.loads(Path(args.config).read_text()))
    settings.update({k: getattr(args, k) for k in (*_FLAGS, "augment") if getattr(args, k) is not None})
    types = {f.name: f.type for f in fields(TrainConfig)}
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        settings[key] = _coerce(key, value, types)
    settings.update(pairs=args.pairs, cache=args.cache, out=args.out)
    if args.no_resume:
        settings["resume"] = False
    if args.quiet:
        settings["progress"] = False
    return TrainConfig.from_dict(settings)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = resolve_config(args)
    except (ValueError, json.JSONDecodeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=2))
    return 0
