"""PF-WILLOW PCK@0.1 of the correspondence (a yardstick of semantic matching, not pass/fail).

For each ordered pair (source, target), the source's keypoints are carried to the target by the forward
field (source = our "target", pair target = our "reference") and count as correct within
0.1 x max(side of the target keypoints' bounding box). The identity baseline maps by relative position.

    python benchmarks/pf_willow.py --vgg-weights ../shared/weights/vgg19-caffe-features-0-34-q8.pth \
        --log /tmp/pf.jsonl                                    # all 900 pairs, five levels, resumable
    python benchmarks/pf_willow.py --vgg-weights PATH --levels relu3_1 relu2_1 relu1_1 [--limit 100]

The preprocessing convention is the weight file's own when it is a published file (recognised by its
SHA-256, e.g. the Caffe five-level file), else ``--vgg-variant`` (default torchvision). With ``--log``
every pair's result is appended to a JSON-lines file as it is measured and pairs already there are skipped,
so an interrupted run continues where it stopped; the summary covers every pair in the log. Pairs run every
10th first, so the first 90 are the ``--limit 90`` subset and a partial run is an evenly spread sample.
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


def _done(log: Path | None) -> dict[str, dict]:
    """Pairs already measured in ``log`` (a torn last line from an interrupted run is ignored)."""
    done: dict[str, dict] = {}
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
                done[row["pair"]] = row
            except (ValueError, KeyError, TypeError):
                continue
    return done


def run(weights: str | None, levels: list[str] | None, size: int, limit: int | None, method: str,
        variant: str | None = None, log: Path | None = None) -> dict:
    from exemplar_color.backbone.weights import choose_variant
    from exemplar_color.pipeline import Colorizer

    variant = choose_variant(weights, variant, default="torchvision")  # this benchmark's runs: torchvision
    # no trained model: matching needs only the backbone, and any levels/convention may be asked for
    colorizer = Colorizer(device="auto", vgg_weights=weights, vgg_variant=variant, levels=levels, model=None,
                          size=size, method=method)
    keypoints = json.loads((ROOT / "keypoints.json").read_text())
    pairs = list(csv.DictReader(open(ROOT / "pairs.csv")))
    if limit:
        pairs = pairs[:: max(1, len(pairs) // limit)][:limit]
    done = _done(log)
    # every 10th pair first (the --limit 90 subset), then the next tenth, ...: a partial run is an even sample
    spread = [pairs[i] for i in sorted(range(len(pairs)), key=lambda i: (i % 10, i))]
    todo = [r for r in spread if f"{r['source']}|{r['target']}" not in done]
    start = time.perf_counter()
    for row in tqdm(todo, desc="pf-willow", unit="pair"):
        src, dst = ROOT / "images" / row["source"], ROOT / "images" / row["target"]
        ks = np.array(keypoints[row["source"]], dtype=np.float64) - 1  # 1-based -> 0-based
        kt = np.array(keypoints[row["target"]], dtype=np.float64) - 1
        _, full = colorizer.match(src, dst)
        fwd = full["forward"]
        h, w = fwd.shape[:2]
        ix = np.clip(np.round(ks[:, 0]).astype(int), 0, w - 1)
        iy = np.clip(np.round(ks[:, 1]).astype(int), 0, h - 1)
        (sw, sh), (tw, th) = Image.open(src).size, Image.open(dst).size
        key = f"{row['source']}|{row['target']}"
        done[key] = {"pair": key, "pck": pck(fwd[iy, ix], kt),
                     "identity_pck": pck(ks * [(tw - 1) / (sw - 1), (th - 1) / (sh - 1)], kt)}
        if log is not None:
            with open(log, "a") as f:
                f.write(json.dumps(done[key]) + "\n")
    rows = [done[k] for k in (f"{r['source']}|{r['target']}" for r in pairs) if k in done]
    return {"pairs": len(rows), "pck@0.1": float(np.mean([r["pck"] for r in rows])),
            "identity_pck@0.1": float(np.mean([r["identity_pck"] for r in rows])),
            "levels": list(colorizer.levels), "variant": colorizer.backbone.variant, "size": size, "method": method,
            "seconds_per_pair": (time.perf_counter() - start) / max(len(todo), 1), "measured_now": len(todo)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg-weights")
    ap.add_argument("--vgg-variant", choices=("torchvision", "caffe"),
                    help="preprocessing convention (default: the file's own when recognised, else torchvision)")
    ap.add_argument("--levels", nargs="+")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, help="evaluate an evenly spaced subset of the 900 pairs")
    ap.add_argument("--method", default="fast", choices=("fast", "patchmatch"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", type=Path, help="JSON lines, one per pair: resume from it, append to it")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(json.dumps(run(a.vgg_weights, a.levels, a.size, a.limit, a.method, a.vgg_variant, a.log), indent=2))


if __name__ == "__main__":
    main()
