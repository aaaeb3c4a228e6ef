"""PF-WILLOW PCK@0.1 of the correspondence (a yardstick of semantic matching, not pass/fail).

For each ordered pair (source, target), the source's keypoints are carried to the target by the forward
field (source = our "target", pair target = our "reference") and count as correct within
0.1 x max(side of the target keypoints' bounding box). The identity baseline maps by relative position.

    python benchmarks/pf_willow.py --vgg-weights PATH --levels relu3_1 relu2_1 relu1_1 [--limit 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ROOT = SHARED / "data" / "pf-willow"


def pck(pred: np.ndarray, truth: np.ndarray, alpha: float = 0.1) -> float:
    side = (truth.max(0) - truth.min(0)).max()
    return float((np.linalg.norm(pred - truth, axis=1) <= alpha * side).mean())


def run(weights: str | None, levels: list[str] | None, size: int, limit: int | None, method: str) -> dict:
    from exemplar_color.pipeline import Colorizer

    colorizer = Colorizer(device="auto", vgg_weights=weights, levels=levels, size=size, method=method)
    keypoints = json.loads((ROOT / "keypoints.json").read_text())
    pairs = list(csv.DictReader(open(ROOT / "pairs.csv")))
    if limit:
        pairs = pairs[:: max(1, len(pairs) // limit)][:limit]
    ours, ident = [], []
    start = time.perf_counter()
    for row in tqdm(pairs, desc="pf-willow", unit="pair"):
        src, dst = ROOT / "images" / row["source"], ROOT / "images" / row["target"]
        ks = np.array(keypoints[row["source"]], dtype=np.float64) - 1  # 1-based -> 0-based
        kt = np.array(keypoints[row["target"]], dtype=np.float64) - 1
        _, full = colorizer.match(src, dst)
        fwd = full["forward"]
        h, w = fwd.shape[:2]
        ix = np.clip(np.round(ks[:, 0]).astype(int), 0, w - 1)
        iy = np.clip(np.round(ks[:, 1]).astype(int), 0, h - 1)
        ours.append(pck(fwd[iy, ix], kt))
        (sw, sh), (tw, th) = Image.open(src).size, Image.open(dst).size
        ident.append(pck(ks * [(tw - 1) / (sw - 1), (th - 1) / (sh - 1)], kt))
    return {"pairs": len(pairs), "pck@0.1": float(np.mean(ours)), "identity_pck@0.1": float(np.mean(ident)),
            "levels": list(colorizer.levels), "size": size, "method": method,
            "seconds_per_pair": (time.perf_counter() - start) / len(pairs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg-weights")
    ap.add_argument("--levels", nargs="+")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, help="evaluate an evenly spaced subset of the 900 pairs")
    ap.add_argument("--method", default="fast", choices=("fast", "patchmatch"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(json.dumps(run(a.vgg_weights, a.levels, a.size, a.limit, a.method), indent=2))


if __name__ == "__main__":
    main()
