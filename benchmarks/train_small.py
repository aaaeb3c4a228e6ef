"""A short real training run of the colorization sub-net on CPU, reported as JSON.

Pairs: the first ``--images`` colour images of ``../shared/data/imagenet-sample`` (one per ImageNet class),
each paired with its nearest other image by a gray VGG-19 relu3_1 descriptor (the pairing rule that stands
in for retrieval); ``--val-fraction`` of the targets are held out. The cache uses the real pretrained
VGG-19 slices (relu3_1, relu2_1, relu1_1: the levels the weight file on these machines covers) at
``--size`` px; the perceptual loss uses relu3_1 for the same reason (relu5_1 needs the full file).

Reported on the held-out pairs (mean |ab - ground truth|, ab units, input = the real reference's warped ab):
the network's error before training, after training, and the "warped ab alone" baseline; plus the same with
the cycle-warped T'_ab input, steps/s and pairs/s.

    python benchmarks/train_small.py --out /tmp/bench-train   # ~15 min on one CPU thread
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
LEVELS = ("relu3_1", "relu2_1", "relu1_1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/exemplar-color-train-small")
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3, help="1e-3: ~160 steps, not the paper's ~50k (1e-4)")
    ap.add_argument("--lr-step-epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from exemplar_color.backbone import VGG19Features
    from exemplar_color.training.cache import PairCache, build_cache
    from exemplar_color.training.pairs import NearestDescriptor, make_pairs, read_labels
    from exemplar_color.training.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    data = SHARED / "data" / "imagenet-sample"
    weights = SHARED / "weights" / "vgg19-torchvision-features-0-10.pth"
    if not data.is_dir() or not weights.is_file():
        print(f"skipped: needs {data} and {weights}", file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    modes = read_labels(data / "labels.csv", column="mode")
    images = sorted(f for f, m in modes.items() if m == "RGB")[: args.images]
    t = time.perf_counter()
    rule = NearestDescriptor(VGG19Features(["relu3_1"], weights=weights), size=args.size)
    manifest = make_pairs(data, images, rule, val_fraction=args.val_fraction, seed=args.seed)
    manifest.save(out / "pairs.csv")
    pairs_s = time.perf_counter() - t

    t = time.perf_counter()
    report = build_cache(manifest, out / "cache", levels=LEVELS, size=args.size, vgg_weights=weights,
                         shard_size=64, batch_size=8, progress=False)
    cache_s = time.perf_counter() - t
    cache = PairCache(out / "cache")

    cfg = TrainConfig(pairs=str(out / "pairs.csv"), cache=str(out / "cache"), out=str(out / "run"), epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, lr_step_epochs=args.lr_step_epochs,
                      perceptual_level="relu3_1", vgg_weights=str(weights), width=args.width, seed=args.seed,
                      checkpoint_every=10_000, num_workers=0, log_every=5, progress=False, resume=False)
    t = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t

    with open(out / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r["val_ab_l1"]]
    steps = [r for r in rows if r["loss"]]
    n_train = len(manifest.split("train")) - sum(1 for i, _ in cache.failures if manifest.pairs[i].split == "train")
    start, end = val[0], val[-1]
    summary = {
        "benchmark": "train_small",
        "device": "cpu", "threads": args.threads,
        "data": "imagenet-sample, nearest relu3_1 descriptor pairs",
        "size": args.size, "levels": list(LEVELS), "width": args.width, "batch_size": args.batch_size,
        "epochs": args.epochs, "lr": args.lr, "perceptual_level": "relu3_1",
        "pairs": len(manifest), "train_pairs": n_train, "val_pairs": len(cache.records_of(split="val")),
        "skipped_pairs": len(report.failures),
        "steps": result["step"],
        "held_out_ab_l1": {
            "start": float(start["val_ab_l1"]),
            "end": float(end["val_ab_l1"]),
            "warped_ab_alone": float(end["val_warped_l1"]),
            "per_epoch": [round(float(r["val_ab_l1"]), 3) for r in val],
        },
        "held_out_ab_l1_cycle_input": {
            "start": float(start["val_cycle_l1"]), "end": float(end["val_cycle_l1"]),
            "cycle_ab_alone": float(end["val_cycle_input_l1"]),
        },
        "train_loss": {"first": float(steps[0]["loss"]), "last": float(steps[-1]["loss"])},
        "seconds": {"pairing": round(pairs_s, 1), "cache_build": round(cache_s, 1), "train": round(train_s, 1)},
        "cache_reused": report.parts_built == 0,  # built by an earlier run in --out: no build timing
        "cache_pairs_per_s": round(report.written / cache_s, 2) if report.parts_built else None,
        "train_steps_per_s": round(result["step"] / train_s, 3),
        "train_pairs_per_s": round(result["step"] * args.batch_size / train_s, 2),
    }
    text = json.dumps(summary, indent=2)
    (out / "result.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
