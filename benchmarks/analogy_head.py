"""The analogy head's settings on cross-image pairs, scored against the targets' true colours, as JSON.

Tuning data must not be evaluation data: by default the pairs are the held-out (``val``) pairs of the
default model's training manifest (``recipes/default_model.py``: training photos with references mixed
from retrieval, same class and related class), never bsds500/test, kodak or the other evaluation sets.
Correspondences are computed once (full VGG-19, five levels, working size 256) and every variant of
the head runs on the same ones; the figure is the mean ab error (CIE Lab, ab units) at the working size,
with the warped ab alone and the trained network (if given) beside it.

    python benchmarks/analogy_head.py --pairs runs/default/pairs.csv --limit 40
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
VGG = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"


def _pairs(path: Path, limit: int) -> list[tuple[Path, Path]]:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == "val"]
    step = max(1, len(rows) // limit)
    return [(SHARED / "data" / r["target"], SHARED / "data" / r["reference"]) for r in rows[::step]][:limit]


def _ab_error(ab: torch.Tensor, truth: torch.Tensor) -> float:
    return float((ab - truth).pow(2).sum(1).sqrt().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=str(ROOT / "runs" / "default" / "pairs.csv"))
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--model", default="default", help="trained network to score beside the heads")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from exemplar_color import Colorizer
    from exemplar_color.color import rgb_to_lab
    from exemplar_color.colorization.analogy import AnalogyHead
    from exemplar_color.photos import read_photo

    c = Colorizer(device="cpu", vgg_weights=VGG, model=args.model)
    base = AnalogyHead()
    variants = {"analogy (before)": replace(base, semantic=0.0), "analogy (default)": base,
                **{f"semantic {s}": replace(base, semantic=s) for s in (1.0, 4.0, 8.0)}}
    errors: dict[str, list[float]] = {k: [] for k in ("warped ab", "network", *variants)}
    t0 = time.perf_counter()
    for target, reference in _pairs(Path(args.pairs), args.limit):
        t, r = read_photo(target), read_photo(reference)
        tl, rlab = c.working(t, r)
        truth = rgb_to_lab(torch.nn.functional.interpolate(t.pixels, size=tl.shape[-2:], mode="bilinear",
                                                           antialias=True, align_corners=False).clamp(0, 1))[:, 1:]
        corr = c.matcher.match(tl, rlab)
        errors["warped ab"].append(_ab_error(corr.warped_ab, truth))
        if "network" in c.heads:
            net = c.heads["network"]
            for at_trained_size, name in ((True, "network"), (False, "network at the working size")):
                net.at_trained_size = at_trained_size  # type: ignore[attr-defined]
                errors.setdefault(name, []).append(_ab_error(net(tl, corr), truth))
        for name, head in variants.items():
            errors[name].append(_ab_error(head(tl, corr), truth))
    out = {"benchmark": "analogy_head", "pairs": len(errors["warped ab"]), "seconds": round(time.perf_counter() - t0),
           "mean_ab_error": {k: round(sum(v) / len(v), 3) for k, v in errors.items() if v}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
