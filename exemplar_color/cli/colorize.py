"""``exemplar-color colorize TARGET... --reference REF -o OUT``: colour black-and-white photos.

One bad file is reported and skipped, the others go on; the exit code is 1 when any failed. Outputs are
written atomically, so ``--resume`` can trust that an existing output is complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from ..errors import ExemplarColorError
from ..io import IMAGE_EXTENSIONS, list_images, save_image
from .options import add_model_option, add_pipeline_options, colorizer_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("colorize", help="colorize black-and-white photos with a reference (or automatically)",
                       description="Colorize each TARGET (files or folders) with the colours of REFERENCE, or, "
                                   "with --auto, of the best reference found in a gallery index.")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--reference", "-r", metavar="REF", help="colour reference photo")
    p.add_argument("--auto", action="store_true", help="pick each target's reference from --index")
    p.add_argument("--index", metavar="PATH", help="gallery index for --auto (see `exemplar-color index build`)")
    p.add_argument("-o", "--out", required=True, help="output file (one target) or folder")
    add_model_option(p)
    add_pipeline_options(p)
    p.add_argument("--save-confidence", action="store_true", help="also write <name>_confidence.png")
    p.add_argument("--save-warped", action="store_true", help="also write <name>_warped.png (raw warped colours)")
    p.add_argument("--resume", action="store_true", help="skip targets whose output already exists")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(func=run)


def plan(targets: list[str], out: str) -> list[tuple[Path, Path]]:
    """``(target, output)`` pairs: folders keep their layout under OUT; one file may name its output."""
    items: list[tuple[Path, Path]] = []
    out_path = Path(out)
    single = len(targets) == 1 and not Path(targets[0]).is_dir() and out_path.suffix.lower() in IMAGE_EXTENSIONS
    if single:
        return [(Path(targets[0]), out_path)]
    for t in targets:
        tp = Path(t)
        if tp.is_dir():
            items += [(f, out_path / f.relative_to(tp).with_suffix(".png")) for f in list_images(tp)]
        else:
            items.append((tp, out_path / (tp.stem + ".png")))
    return items


def _side_path(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}_{tag}.png")


def run(args: argparse.Namespace) -> int:
    if not args.auto and not args.reference:
        raise ExemplarColorError("give --reference REF, or --auto with --index PATH")
    if args.auto and not args.index:
        raise ExemplarColorError("--auto needs --index PATH (build one with `exemplar-color index build`)")
    items = plan(args.targets, args.out)
    if not items:
        raise ExemplarColorError(f"no images found in {' '.join(args.targets)}")
    todo = [(t, o) for t, o in items if not (args.resume and o.exists())]
    colorizer = colorizer_from(args, index=args.index if args.auto else None)
    report = {"outputs": [], "failed": [], "skipped": [str(o) for t, o in items if (t, o) not in todo],
              "head": colorizer.head_name, "device": str(colorizer.device)}
    start = time.perf_counter()
    bar = tqdm(todo, desc="colorize", unit="img", disable=len(todo) < 2 or args.json, file=sys.stderr)
    for target, out in bar:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = colorizer.colorize(target, None if args.auto else args.reference)
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
            save_image(out, result.image)
            if args.save_confidence:
                save_image(_side_path(out, "confidence"), result.confidence_image())
            if args.save_warped:
                save_image(_side_path(out, "warped"), result.warped_image)
            report["outputs"].append({"target": str(target), "output": str(out), "reference": result.reference,
                                      "timings": {k: round(v, 4) for k, v in result.timings.items()}})
        except (ExemplarColorError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            report["failed"].append({"target": str(target), "error": str(e)})
    report["seconds"] = round(time.perf_counter() - start, 3)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"colorized {len(report['outputs'])}, skipped {len(report['skipped'])}, "
              f"failed {len(report['failed'])} -> {args.out}", file=sys.stderr)
    return 1 if report["failed"] else 0
