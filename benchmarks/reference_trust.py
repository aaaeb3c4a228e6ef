"""Does a retrieved reference help the default sub-net, and can the match say when it does not? JSON.

Issue 24 asks that in automatic mode a reference that matches poorly never makes a photo worse than colouring
it alone. Protocol: held-out training photos (``split=val`` rows of the recipe's pair manifest: never trained
on, used only for model selection, so no evaluation set is looked at), every ``--step``-th of them; each is
coloured in automatic mode from the gallery index of the training photos (the photo itself and its copies
are never its own reference) and alone, and scored against its colour truth (ab error: mean Euclidean ab
distance; colourfulness: Hasler-Suesstrunk). Per photo, the signals the match offers: the mean cycle
confidence and the mean of each similarity map. For each signal, the rule "colour alone below a threshold",
with its best threshold on these photos (an optimistic bound: it is chosen on the photos it is scored on).

    python benchmarks/reference_trust.py --pairs runs/hc/pairs.csv --gallery runs/hc/gallery \\
        --index runs/hc/index -o benchmarks/results/reference_trust.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))


def measure(colorizer, path: str) -> dict:
    """One photo: errors with the gallery's reference and alone, and the match's signals."""
    from exemplar_color.metrics import ab_error, colorfulness

    truth = np.asarray(Image.open(path).convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a colour target: only its luminance is used, as intended here
        res = colorizer.colorize_heads(path, None, heads=("network", "analogy"))  # by path: never itself
        alone = colorizer.colorize_alone(path)
    net, analogy = res["network"], res["analogy"]
    sims = net.similarity.reshape(net.similarity.shape[0], -1).mean(1)
    chosen = next((r for r in net.recommendations if r.path == net.reference), None)
    parts = {"score": chosen.score, **chosen.parts} if chosen else {}
    ranking = {f"retrieval_{k}": -float(v) for k, v in parts.items() if k != "class"}
    return {"target": path, "reference": net.reference,
            "ab_reference": float(ab_error(np.asarray(net.image), truth)),
            "ab_alone": float(ab_error(np.asarray(alone.image), truth)),
            "colourfulness_reference": float(colorfulness(np.asarray(net.image))),
            "colourfulness_alone": float(colorfulness(np.asarray(alone.image))),
            "colourfulness_truth": float(colorfulness(truth)),
            "signals": {"cycle_confidence": float(np.mean(analogy.confidence)),
                        **{f"similarity_{i}": float(s) for i, s in enumerate(sims)},
                        **ranking}}  # the gallery's own distances, negated: higher means a closer photo


def summarise(rows: list[dict]) -> dict:
    ref = np.array([r["ab_reference"] for r in rows])
    alone = np.array([r["ab_alone"] for r in rows])
    change = ref - alone
    rules = {}
    for name in [k for k in rows[0]["signals"] if all(k in r["signals"] for r in rows)]:
        v = np.array([r["signals"][name] for r in rows])
        errors = {float(t): float(np.where(v < t, alone, ref).mean()) for t in np.quantile(v, np.linspace(0, 1, 41))}
        best = min(errors, key=errors.get)
        rules[name] = {"correlation_with_change": float(np.corrcoef(v, change)[0, 1]),
                       "best_threshold": best, "ab_error_with_rule": errors[best],
                       "share_coloured_alone": float(np.mean(v < best))}
    cf = lambda k: float(np.mean([r[k] for r in rows]))
    return {"photos": len(rows), "ab_error_reference": float(ref.mean()), "ab_error_alone": float(alone.mean()),
            "ab_error_best_of_both_per_photo": float(np.minimum(ref, alone).mean()),
            "reference_worse_by_over_1": int((change > 1).sum()), "reference_better_by_over_1": int((change < -1).sum()),
            "colourfulness_reference": cf("colourfulness_reference"), "colourfulness_alone": cf("colourfulness_alone"),
            "colourfulness_truth": cf("colourfulness_truth"), "rules": rules}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", required=True, help="the recipe's pair manifest (its split=val rows are used)")
    ap.add_argument("--gallery", required=True, help="folder the manifest's paths are relative to")
    ap.add_argument("--index", required=True, help="gallery index of the training photos")
    ap.add_argument("--step", type=int, default=3, help="every N-th held-out photo (default 3)")
    ap.add_argument("--limit", type=int, default=80, help="at most this many photos (default 80)")
    ap.add_argument("--size", type=int, default=256, help="working size (default 256)")
    ap.add_argument("--vgg-weights", default=str(SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"))
    ap.add_argument("--model", default="default", help="default (the shipped sub-net) or a checkpoint to compare")
    ap.add_argument("--vivid", action="store_true", help="the sub-net's vivid readout")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-o", "--out", help="write the JSON here too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from exemplar_color import Colorizer

    with open(args.pairs, newline="") as f:
        held_out = [r["target"] for r in csv.DictReader(f) if r.get("split") == "val"]
    paths = [str(Path(args.gallery) / t) for t in held_out[::args.step][:args.limit]]
    colorizer = Colorizer(vgg_weights=args.vgg_weights, index=args.index, size=args.size, model=args.model,
                          vivid=args.vivid)
    rows = [measure(colorizer, p) for p in tqdm(paths, desc="photos", file=sys.stderr)]
    out = {"protocol": "held-out training photos, automatic mode vs alone (benchmarks/reference_trust.py)",
           "size": args.size, "model": args.model, "vivid": args.vivid, "summary": summarise(rows), "photos": rows}
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
