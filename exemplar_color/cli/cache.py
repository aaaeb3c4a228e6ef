"""``exemplar-color cache``: training pairs and the HDF5 cache of colorization sub-net inputs.

- ``cache pairs``: choose a reference for every image of a folder (same class, nearest descriptor) and
  write a pair manifest.
- ``cache build``: run the correspondence once for every pair of a manifest; sharded, resumable (run the
  same command again), one shard set per rank under ``torchrun``.
- ``cache info``: what a cache holds and what it was built with.

Results go to stdout (JSON with ``--json``), progress and skipped pairs (logged by the library) to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError
from ..backbone.spec import DEFAULT_LEVELS, LEVELS
from .options import (add_batch_size_option, add_device_option, add_json_option, add_levels_option, add_method_option,
                      add_out_option, add_shard_size_option, add_threads_option, add_vgg_options, at_least, level_of,
                      variant_or_default)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="build training pairs and the cache of sub-net inputs",
                       description=__doc__,
                       epilog="""Examples:
  exemplar-color cache pairs --root images/ -o pairs.csv
  exemplar-color cache build --pairs pairs.csv --root images/ -o cache/
  exemplar-color cache info cache/
""")
    cmds = p.add_subparsers(dest="cache_command", metavar="ACTION")

    b = cmds.add_parser(
        "build", help="compute the sub-net inputs of every pair (resumable)",
        epilog="Example:\n  exemplar-color cache build --pairs pairs.csv --root ../shared/data/imagenet-sample "
               "-o cache/ --size 128 --levels relu3_1 relu2_1 relu1_1 --vgg-weights vgg-slice.pth")
    b.add_argument("--pairs", required=True, metavar="FILE", help="pair manifest (CSV or JSON)")
    b.add_argument("--root", metavar="DIR", help="the folder the manifest's paths are relative to (default: the "
                                                 "manifest's)")
    add_out_option(b, "cache folder (run the same command again to continue an interrupted build)", metavar="DIR")
    b.add_argument("--size", type=at_least(16), default=256, metavar="N",
                   help="working size in pixels: each pair is matched squashed to N x N (default 256)")
    add_levels_option(b, default=DEFAULT_LEVELS)
    add_vgg_options(b)
    add_method_option(b, precision=False)
    add_shard_size_option(b, 256, "pairs")
    add_batch_size_option(b, 8, "pairs")
    b.add_argument("--features", type=level_list, default=(), metavar="LEVEL[,LEVEL...]",
                   help="also store the target's own VGG-19 features at these levels, e.g. relu5_1,relu4_1,relu3_1 "
                        "(what `train --arch hypercolumn` reads)")
    b.add_argument("--mirrored", action="store_true",
                   help="also store those features of every target mirrored left-right, so that `train --arch "
                        "hypercolumn --augment` can mirror records exactly (a finished cache built again with "
                        "this flag gains them)")
    add_device_option(b)
    add_threads_option(b)
    add_json_option(b, "print the report as JSON on stdout")
    b.set_defaults(func=run_build)

    pr = cmds.add_parser(
        "pairs", help="choose references and write a pair manifest",
        epilog="Example:\n  exemplar-color cache pairs --root ../shared/data/imagenet-val-227 --rule same-class,nearest "
               "--labels ../shared/data/imagenet-val-227/labels.csv --val-fraction 0.1 -o pairs.csv")
    pr.add_argument("--root", required=True, metavar="DIR",
                    help="image folder: its photos are paired, and the manifest's paths are relative to it")
    add_out_option(pr, "manifest to write (.csv or .json)", metavar="FILE")
    pr.add_argument("--rule", default="same-class,nearest", metavar="RULE[,RULE]",
                    help="rules tried in order: same-class (needs --labels), nearest (default: same-class,nearest)")
    pr.add_argument("--labels", metavar="FILE", help="labels.csv with columns file, class_index")
    pr.add_argument("--limit", type=at_least(1), metavar="N", help="use only the first N images (sorted)")
    pr.add_argument("--val-fraction", type=float, default=0.0, metavar="X",
                    help="fraction of targets held out (split=val) (default 0)")
    pr.add_argument("--seed", type=int, default=0, metavar="N",
                    help="seed of the same-class choice and of the held-out split (default 0)")
    add_vgg_options(pr, weights_help="; for the nearest rule")
    pr.add_argument("--level", default="relu3_1", type=level_of(LEVELS), metavar="LEVEL",
                    help="descriptor level of the nearest rule (default relu3_1)")
    add_device_option(pr)
    add_threads_option(pr)
    add_json_option(pr, "print a summary as JSON on stdout")
    pr.set_defaults(func=run_pairs)

    i = cmds.add_parser("info", help="summarise a cache", epilog="Example:\n  exemplar-color cache info cache/ --json")
    i.add_argument("cache", metavar="CACHE_DIR", help="cache folder")
    add_json_option(i, quiet=False)
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            if k != "failures":
                print(f"{k}: {v}")


def level_list(text: str) -> tuple[str, ...]:
    """``relu5_1,relu4_1`` -> the levels, each checked."""
    levels = tuple(t for t in text.replace(" ", ",").split(",") if t)
    bad = [lv for lv in levels if lv not in LEVELS or not lv.startswith("relu")]
    if bad or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"expected distinct VGG-19 relu levels, e.g. relu5_1,relu4_1,relu3_1; "
                                         f"got {text!r}")
    return levels


def run_build(args: argparse.Namespace) -> int:
    from ..runtime import dist_env, resolve_device, set_threads
    from ..training.cache import build_cache
    from ..training.pairs import PairManifest
    from ..outputs import check_output_folder

    check_output_folder(args.out, "--out")  # before any model loads
    set_threads(args.threads)
    device = resolve_device(args.device)
    rank, world, _ = dist_env()
    manifest = PairManifest.load(args.pairs, root=args.root)
    report = build_cache(manifest, args.out, levels=args.levels, size=args.size, variant=variant_or_default(args),
                         vgg_weights=args.vgg_weights, method=args.method,
                         shard_size=args.shard_size, batch_size=args.batch_size, device=device, rank=rank,
                         world=world, progress=not (args.quiet or args.json), features=args.features,
                         mirrored=args.mirrored)
    result = {"cache": args.out, "pairs": len(manifest), **report.to_dict()}
    if report.failures:
        print(f"{len(report.failures)} of {len(manifest)} pairs skipped (missing, corrupt or grayscale images)",
              file=sys.stderr)
    _emit(result, args.json)
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    from ..backbone.features import VGG19Features
    from ..io import list_images
    from ..runtime import resolve_device
    from ..training.pairs import FirstOf, NearestDescriptor, SameClass, make_pairs, read_labels
    from ..outputs import check_output_file

    names = [r.strip() for r in args.rule.split(",") if r.strip()]
    for name in names:  # all checked before any work
        if name not in ("same-class", "nearest"):
            raise UsageError(f"unknown rule {name!r}; use same-class and/or nearest")
        if name == "same-class" and not args.labels:
            raise UsageError("--rule same-class needs --labels")
    check_output_file(args.out, "--out", [args.root])
    images = list_images(args.root)
    if args.limit:
        images = images[: args.limit]
    rules = []
    for name in names:
        if name == "same-class":
            rules.append(SameClass(read_labels(args.labels), seed=args.seed))
        elif name == "nearest":
            backbone = VGG19Features([args.level], weights=args.vgg_weights, variant=variant_or_default(args))
            rules.append(NearestDescriptor(backbone.to(resolve_device(args.device))))
    manifest = make_pairs(args.root, images, FirstOf(rules), val_fraction=args.val_fraction, seed=args.seed)
    manifest.save(args.out)
    _emit({"manifest": args.out, "images": len(images), "pairs": len(manifest),
           "val": len(manifest.split("val")), "unpaired": len(images) - len(manifest)}, args.json)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..training.cache import PairCache

    c = PairCache(args.cache, allow_partial=True)
    built = c.plan["num_shards"] - len(c.missing_shards)
    _emit({"cache": args.cache, **c.config.to_dict(), "pairs": len(c.pairs), "records": len(c),
           "shards": f"{built}/{c.plan['num_shards']}", "failed": len(c.failures),
           "failures": [{"pair": i, "reason": r} for i, r in c.failures]}, args.json)
    return 0
