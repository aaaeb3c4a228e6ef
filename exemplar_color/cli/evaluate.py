"""``exemplar-color evaluate IMAGES --reference-mode MODE --out REPORT_DIR``: a reproducible quality report.

Decolorizes colour photos, colorizes them back with references chosen by MODE, and writes
``report.json`` (per-image and mean metrics, timings, configuration, versions), ``report.md`` (method x
mean PSNR/SSIM/ΔCF/ab error, against the "warped ab alone" and Reinhard baselines) and
``contact_sheet.png`` (gray / reference / result / baselines / ground truth). Images that cannot be read
are listed in the report; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import UsageError
from .options import (add_json_option, add_model_option, add_out_option, add_pipeline_options, at_least,
                      colorizer_from, index_folder)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="quality report: decolorize photos, colorize them back, measure",
                       description="Decolorize colour photos, colorize them back with references chosen by "
                                   "--reference-mode, and write report.json, report.md and contact_sheet.png "
                                   "to --out, with the full pipeline compared to 'warped ab alone' and "
                                   "Reinhard global colour transfer.",
                       epilog="Example:\n  exemplar-color evaluate ../shared/data/kodak --reference-mode self-transform "
                              "-o report/ --limit 8")
    p.add_argument("images", metavar="IMAGES_DIR_OR_LIST",
                   help="folder of colour photos, or a text file listing them (one per line); in given mode "
                        "the folder holding the pairs files (every pairs.txt under it unless --pairs), or a pairs file")
    p.add_argument("--reference-mode", required=True, choices=("given", "auto", "self-transform"),
                   help="given: pairs files 'target reference'; auto: best match from --index; "
                        "self-transform: a randomly rotated/scaled/shifted copy of the ground truth")
    p.add_argument("--pairs", nargs="+", metavar="FILE",
                   help="pairs file(s) for given mode: lines 'target reference', relative to the file's folder")
    p.add_argument("--index", metavar="PATH", type=index_folder, help="gallery index for auto mode")
    add_model_option(p)
    add_out_option(p, "folder for the report", metavar="REPORT_DIR")
    p.add_argument("--limit", type=at_least(1), metavar="N", help="evaluate only the first N images")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the self-transform references (default 0)")
    p.add_argument("--thumb-size", type=at_least(16), default=128, metavar="PX",
                   help="contact-sheet thumbnail size (default 128)")
    p.add_argument("--sheet-columns", type=at_least(1), default=12, metavar="N",
                   help="images per contact-sheet row block (default 12)")
    p.add_argument("--sheet-max", type=at_least(1), metavar="N",
                   help="show at most N images (evenly spaced) on the contact sheet (default: all)")
    add_json_option(p, "print the summary as JSON on stdout")
    add_pipeline_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from ..evaluation import METHOD_LABELS, methods_of, run_evaluation
    from ..outputs import check_output_folder

    if args.reference_mode == "auto" and not args.index:
        raise UsageError("--reference-mode auto needs --index PATH "
                                 "(build one with `exemplar-color index build`)")
    if args.pairs and args.reference_mode != "given":
        raise UsageError("--pairs is for --reference-mode given")
    from pathlib import Path

    if not Path(args.images).exists():
        raise UsageError(f"{args.images}: no such file or folder")
    check_output_folder(args.out, "--out", inputs=[args.images])  # before the model
    colorizer = colorizer_from(args, index=args.index if args.reference_mode == "auto" else None)
    config = {"model": args.model, "index": args.index, "method": args.method,
              "precision": colorizer.matcher.precision,
              "command": "exemplar-color " + " ".join(shlex.quote(a) for a in sys.argv[1:])
              if sys.argv and sys.argv[0].endswith("exemplar-color") else None}
    if not config["command"]:
        config["command"] = "exemplar-color evaluate " + " ".join(
            shlex.quote(str(a)) for a in _argv_of(args))
    ev = run_evaluation(args.images, args.reference_mode, colorizer, args.out, pairs=args.pairs, limit=args.limit,
                        seed=args.seed, thumb_size=args.thumb_size, columns=args.sheet_columns,
                        sheet_max=args.sheet_max, configuration=config,
                        progress=lambda xs: tqdm(xs, desc="evaluate", unit="img", file=sys.stderr,
                                                 disable=len(xs) < 2 or args.json or args.quiet))
    rep = ev.report
    if args.json:
        print(json.dumps({"summary": rep["summary"], "n_evaluated": rep["n_evaluated"],
                          "n_failed": rep["n_failed"], "out": args.out}, indent=2, default=str))
    else:
        for m in methods_of(rep):
            s = rep["summary"][m]
            fig = (f"PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  ΔCF {s['delta_cf']:.2f}  "
                   f"ab error {s['ab_error']:.2f}") if s["psnr"] is not None else \
                f"colourfulness {s['colorfulness']:.2f} (no ground truth)" if s["colorfulness"] is not None else "n/a"
            print(f"{METHOD_LABELS[m]:32s} {fig}")  # the result: stdout, as every command's
        print(f"evaluated {rep['n_evaluated']}, failed {rep['n_failed']} -> {args.out}")
    for f in rep["failed"]:
        print(f"error: {f['name']}: {f['error']}", file=sys.stderr)
    return 1 if rep["failed"] else 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """A command line equivalent to ``args`` (when not run from the console script)."""
    out = [args.images, "--reference-mode", args.reference_mode]
    if args.pairs:
        out += ["--pairs", *args.pairs]
    for opt in ("index", "limit"):
        if getattr(args, opt) is not None:
            out += [f"--{opt}", str(getattr(args, opt))]
    if args.model != "default":
        out += ["--model", args.model]
    out += ["--out", args.out, "--size", str(args.size)]
    if args.levels:
        out += ["--levels", *args.levels]
    if args.vgg_weights:
        out += ["--vgg-weights", args.vgg_weights]
    if args.seed:
        out += ["--seed", str(args.seed)]
    return out
