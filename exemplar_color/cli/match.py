"""``exemplar-color match TARGET --reference REF -o FILE.npz``: the correspondence between two photos."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from .options import add_json_option, add_out_option, add_pipeline_options, colorizer_from, existing_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match", help="bidirectional correspondence and similarity maps of two photos",
                       description="Match TARGET to REFERENCE and save the fields and similarity maps as .npz. "
                                   "forward (H_t, W_t, 2): for each target pixel (row i, column j), the matched "
                                   "(x, y) in the reference's original pixels; backward: the reverse; similarity "
                                   "(2 x levels, h, w) at the working size: forward maps deepest level first, "
                                   "then bidirectional maps.",
                       epilog="Example:\n  exemplar-color match old.jpg --reference colour.jpg -o match.npz --json")
    p.add_argument("target", type=existing_file, metavar="TARGET", help="the (black-and-white) photo to match")
    p.add_argument("--reference", "-r", metavar="REF", type=existing_file, default=None,
                   help="the colour reference photo (as in colorize; a second positional argument also works)")
    # the reference as a second positional argument, as before --reference: kept working, hidden
    p.add_argument("reference_positional", nargs="?", type=existing_file, default=None, help=argparse.SUPPRESS)
    add_out_option(p, "the .npz file to write", metavar="FILE.npz")
    add_pipeline_options(p)
    add_json_option(p, "print a JSON summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import atomic_write
    from ..layout import to_array
    from ..outputs import check_output_file

    if args.reference and args.reference_positional:
        raise UsageError("give the reference once: --reference REF (or as the second argument), not both")
    reference = args.reference or args.reference_positional
    if not reference:
        raise UsageError("give the colour reference: --reference REF")
    check_output_file(args.out, "--out", inputs=[args.target, reference])  # before the model
    colorizer = colorizer_from(args)
    corr, full = colorizer.match(args.target, reference)
    names = [f"forward:{lv}" for lv in corr.levels] + [f"bidirectional:{lv}" for lv in corr.levels]
    arrays = {
        "forward": full["forward"].astype(np.float32),
        "backward": full["backward"].astype(np.float32),
        "similarity": corr.similarity[0].cpu().numpy().astype(np.float32),
        "similarity_names": np.array(names),
        "confidence": corr.confidence[0, 0].cpu().numpy().astype(np.float32),
        "warped_ab": to_array(corr.warped_ab),
        "levels": np.array(corr.levels),
        "working_target_size": np.array(corr.forward.shape[-2:]),
        "working_reference_size": np.array(corr.backward.shape[-2:]),
    }
    with atomic_write(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    summary = {"out": str(args.out), "target": args.target, "reference": reference,
               "levels": list(corr.levels), "forward_shape": list(arrays["forward"].shape),
               "mean_confidence": float(arrays["confidence"].mean())}
    print(json.dumps(summary) if args.json else f"wrote {args.out}")
    return 0
