"""The recipe that trains the colorization sub-net shipped inside the package (``exemplar_color/models``).

Every stage is resumable and skipped when its output exists, so the same command continues a killed run:

1. ``gallery``: the training photos, and only those, as a folder of links mirroring ``../shared/data``
   (imagenet-sample, imagenet-val-227, bsds500 train + val; grayscale originals left out). bsds500/test,
   kodak, exemplar-pairs, legacy-gray and pf-willow are the evaluation sets and never enter.
2. ``index``: the project's gallery index over those photos (two-stage retrieval, full Caffe VGG-19).
3. ``pairs``: ``--refs`` references per target, mixed as the authors did (:mod:`exemplar_color.training.
   references`: retrieval top-5 / same class / related class, itself and near-duplicates excluded);
   ``--val-fraction`` of the targets held out for model selection (``best.safetensors``).
4. ``cache``: the similarity sub-net's outputs for every pair at ``--size`` px, five levels, Caffe VGG-19.
5. ``train``: the hypercolumn sub-net on the cache, every batch in three branches (T'_ab, the real
   reference, no reference), class-rebalanced cross-entropy on the ab distribution (``--rebalance``; weighed on
   the T'_ab branch by ``--cycle-ce``), smooth-L1 of the fused output on the real-reference branch for the
   trust gate (``--arch unet``: the previous U-Net's recipe).
6. ``calibrate``: the readouts (temperature, class rebalancing applied at readout, gate power; default and
   vivid) chosen on held-out model-selection pairs (:func:`choose_readouts`).
7. ``export``: the chosen checkpoint with its readouts as float16 safetensors + JSON, ready to copy into the
   package (skipped when already exported from the same checkpoint and calibration).

The defaults are the shipped model's recipe (see its model card).

    python recipes/default_model.py --work runs/default --stages all

On a lent GPU, where neither ``../shared`` nor hours are at hand: ``--stages pack`` (not part of ``all``) writes
``WORK/pack``, the pair manifest and every photo it names as the ``--size`` px square the cache stage reads of
it (WebP: 21.3 MB for the shipped model's 6,530), and that folder is a work folder of its own:

    python recipes/default_model.py --work runs/default --stages pack
    python recipes/default_model.py --work runs/default/pack --data runs/default/pack/photos \
        --vgg-weights vgg19-caffe-features-0-34-q8.pth --device cuda --stages cache,train,calibrate,export
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
VGG = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"
TRAIN_SETS = {"imagenet-sample": "imagenet-sample", "imagenet-val-227": "imagenet-val-227/images",
              "bsds500-train": "bsds500/train", "bsds500-val": "bsds500/val", "train-extra": "train-extra"}
CLASSED_EXTRA = ("caltech101", "imagenette")  # train-extra sources whose class column names a real class
STAGES = ("gallery", "index", "pairs", "pack", "cache", "train", "calibrate", "export")  # the order they run in
ALL = tuple(s for s in STAGES if s != "pack")  # a pack is made only when named
TEMPERATURES = (0.25, 0.3, 0.38, 0.45, 0.55, 0.7, 1.0)
BOOSTS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.75, 1.0)  # how much class rebalancing the readout applies (0: the real odds)
READOUT_REBALANCE = 0.5  # the rebalancing (lambda) a boost of 1 applies: Zhang et al.'s
GATE_POWERS = (1.0, 2.0, 4.0, 8.0)  # how sure the gate must be before the warped reference is taken


def _classes() -> dict[str, str]:
    """``relative path -> ImageNet class index`` of the labelled training photos."""
    out = {}
    for rows, folder in ((DATA / "imagenet-sample" / "labels.csv", "imagenet-sample"),
                         (DATA / "imagenet-val-227" / "labels.csv", "imagenet-val-227/images")):
        with open(rows, newline="") as f:
            for r in csv.DictReader(f):
                if r.get("mode", "RGB") == "RGB":
                    out[f"{folder}/{r['file']}"] = r["class_index"]
    with open(DATA / "train-extra" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["source"] in CLASSED_EXTRA:
                out[f"train-extra/{r['file']}"] = f"{r['source']}/{r['class']}"
    return out


def stage_gallery(work: Path, args: argparse.Namespace) -> Path:
    from PIL import Image

    gallery = work / "gallery"
    if (gallery / ".done").is_file():
        return gallery
    photos = []
    for folder in TRAIN_SETS.values():
        for src in sorted((DATA / folder).rglob("*")):
            if src.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            with Image.open(src) as im:
                if im.mode == "RGB":
                    photos.append(src)
    if args.limit:
        photos = sorted(np.random.default_rng(args.seed).choice(photos, min(args.limit, len(photos)), replace=False))
    for src in photos:
        dst = gallery / src.relative_to(DATA)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(src.resolve())
    n = len(photos)
    (gallery / ".done").write_text(f"{n}\n")
    print(f"gallery: {n} colour training photos", file=sys.stderr)
    return gallery


def stage_index(work: Path, args: argparse.Namespace):
    from exemplar_color.retrieval import GalleryIndex
    from exemplar_color.retrieval.descriptors import DescriptorConfig

    path = work / "index"
    if (path / "manifest.json").is_file():
        return GalleryIndex.open(path, weights=args.vgg_weights)
    config = DescriptorConfig(level="relu5_4", variant="caffe", size=args.index_size)
    return GalleryIndex.build(work / "gallery", path, config=config, weights=args.vgg_weights, variant="caffe",
                              resume=True, batch=16, device=args.device)


def stage_pairs(work: Path, args: argparse.Namespace) -> Path:
    from exemplar_color.training.pairs import Pair, PairManifest
    from exemplar_color.training.references import choose_references

    out = work / "pairs.csv"
    if out.is_file():
        return out
    index = stage_index(work, args)
    desc = index.stored_descriptors()
    found = index.search_descriptors(desc, k=12, candidates=100)
    rel = list(index.store.paths)
    pos = {r: i for i, r in enumerate(rel)}
    retrieved = [[pos[rec.relpath] for rec in recs] for recs in found]
    labels = _classes()
    classes = [labels.get(r) for r in rel]
    g = desc.global_ / np.maximum(np.linalg.norm(desc.global_, axis=1, keepdims=True), 1e-9)
    refs = choose_references(classes, g, retrieved, per_target=args.refs, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    val = set(rng.choice(len(rel), round(args.val_fraction * len(rel)), replace=False).tolist())
    pairs, kinds = [], {}
    for i, chosen in enumerate(refs):
        for j, kind in chosen:
            pairs.append(Pair(rel[i], rel[j], "val" if i in val else "train"))
            kinds[kind] = kinds.get(kind, 0) + 1
    PairManifest(DATA, pairs, source="recipe").save(out)
    (work / "pairs-summary.json").write_text(json.dumps({"targets": len(rel), "pairs": len(pairs),
                                                          "val_targets": len(val), "kinds": kinds}, indent=1))
    print(f"pairs: {len(pairs)} for {len(rel)} targets, kinds {kinds}", file=sys.stderr)
    return out


def stage_cache(work: Path, args: argparse.Namespace) -> Path:
    from exemplar_color.training.cache import build_cache
    from exemplar_color.training.pairs import PairManifest

    manifest = PairManifest.load(work / "pairs.csv", root=args.data)
    from exemplar_color.runtime import dist_env

    features = tuple(args.features.split(",")) if args.features else ()
    rank, world, _ = dist_env()  # RANK / WORLD_SIZE: one process per share of the shards (e.g. one per core)
    build_cache(manifest, work / "cache", size=args.size, variant="caffe", vgg_weights=args.vgg_weights,
                shard_size=256, batch_size=8, features=features, device=args.device, rank=rank, world=world,
                mirrored=args.mirrored)
    return work / "cache"


def stage_pack(work: Path, args: argparse.Namespace) -> Path:
    """The pairs and their photos as the cache stage reads them (``--size`` px squares), in WebP at
    ``--pack-quality``: all a GPU run needs besides the VGG-19 weights, small enough to send to a lent machine.
    Resumable photo by photo; the manifest is written last, so a pack with ``pairs.csv`` is complete."""
    from PIL import Image
    from tqdm import tqdm

    from exemplar_color.io import atomic_write
    from exemplar_color.training.images import load_square
    from exemplar_color.training.pairs import Pair, PairManifest

    pack = work / "pack"
    if (pack / "pairs.csv").is_file():
        return pack
    manifest = PairManifest.load(work / "pairs.csv", root=args.data)
    names = sorted({rel for pair in manifest.pairs for rel in (pair.target, pair.reference)})
    for rel in tqdm(names, desc="pack", unit="photo", file=sys.stderr):
        dst = pack / "photos" / f"{rel}.webp"
        if dst.is_file():
            continue
        rgb = load_square(manifest.path(rel), args.size)[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(dst) as tmp:
            Image.fromarray(rgb).save(tmp, format="WEBP", quality=args.pack_quality)
    renamed = [Pair(f"{p.target}.webp", f"{p.reference}.webp", p.split) for p in manifest.pairs]
    PairManifest(pack / "photos", renamed, source="pack").save(pack / "pairs.csv")
    size = sum(f.stat().st_size for f in (pack / "photos").rglob("*.webp"))
    print(f"pack: {len(names)} photos, {len(renamed)} pairs, {size / 1e6:.1f} MB in {pack}", file=sys.stderr)
    return pack


def stage_train(work: Path, args: argparse.Namespace) -> dict:
    from exemplar_color.training.trainer import TrainConfig, train

    cfg = TrainConfig(pairs=str(work / "pairs.csv"), cache=str(work / "cache"), out=str(work / args.run),
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_step_epochs=args.lr_step_epochs,
                      vgg_weights=str(args.vgg_weights), width=args.width, seed=args.seed,
                      checkpoint_every=args.checkpoint_every,
                      num_workers=0, log_every=10, augment=True, max_steps=args.max_steps,
                      val_every=args.val_every or args.checkpoint_every, reference_chroma=args.reference_chroma,
                      saturation=args.saturation, arch=args.arch, depth=args.depth, rebalance=args.rebalance,
                      cycle_ce=args.cycle_ce, temperature=args.temperature, device=args.device)
    if args.arch == "hypercolumn":  # mirrored only, with the mirrored photos' own features (cached flipped or
        cfg.augment = args.mirrored  # cropped features are not the flipped or cropped photo's features)
    return train(cfg)


def _chosen(work: Path, args: argparse.Namespace) -> Path:
    run = work / args.run
    best = run / "best.safetensors"
    return best if args.export == "best" and best.is_file() else run / "model.safetensors"


def choose_readouts(rows: list[dict], powers: list[float], slack: float) -> tuple[int, int]:
    """The readouts kept, as indices of ``rows`` (held-out figures of each readout; ``powers``: its gate power).
    Only readouts where the real reference adds no error (ab error with it at most without it) are eligible.
    Default: of those within ``slack`` of the lowest summed ab error (with and without reference), the one whose
    colourfulness (Hasler-Suesstrunk, as the quality reports give it) is nearest the truth's. Vivid: at the same
    gate power, the most colourful one whose ab errors still stay below the gray image's (colour that errs less
    than none), ties (to 0.01) going to the lower error."""
    score = [r["val_ab_l1"] + r["val_noref_l1"] for r in rows]
    fair = [i for i, r in enumerate(rows) if r["val_ab_l1"] <= r["val_noref_l1"]]
    if not fair:
        raise SystemExit("calibrate: the real reference adds error at every readout of this model; not exported")

    def colour(i: int) -> float:
        return (rows[i]["val_ab_colourfulness"] + rows[i]["val_noref_colourfulness"]) / 2

    best = min(score[i] for i in fair)
    chosen = min((i for i in fair if score[i] <= best + slack), key=lambda i: abs(colour(i) - 1))
    bold = [i for i in fair if powers[i] == powers[chosen] and rows[i]["val_noref_l1"] < rows[i]["val_gray_l1"]]
    vivid = max(bold, key=lambda i: (round(colour(i), 2), -score[i]), default=chosen)
    return chosen, vivid


def stage_calibrate(work: Path, args: argparse.Namespace) -> dict:
    """The hypercolumn sub-net's readout, chosen on the run's own held-out model-selection pairs (never on
    evaluation photos): the temperature of the annealed mean, how much class rebalancing to apply at readout (the
    logit bias ``-log(w_trained) + boost * log(w_0.5)`` first gives the network's odds back their real base rates,
    whatever rebalancing it learnt with, then favours rare colours by ``boost``) and the power of the trust gate
    (how sure it must be before the warped reference is taken). Kept: the default and the vivid readout of
    :func:`choose_readouts`."""
    import random

    from exemplar_color.colorization.checkpoint import load_checkpoint
    from exemplar_color.training.cache import CacheDataset, decode
    from exemplar_color.training.distribution import rebalancing_weights
    from exemplar_color.training.trainer import TrainConfig, Trainer
    from exemplar_color.training.validation import sweep_readouts

    run = work / args.run
    out = run / "calibration.json"
    if out.is_file():
        return json.loads(out.read_text())
    net = load_checkpoint(_chosen(work, args))[0]
    trainer = Trainer(TrainConfig.from_dict(json.loads((run / "config.json").read_text())["train"]))
    freq = trainer.bin_freq.cpu()
    log_trained, log_boosted = (rebalancing_weights(freq, lam).log() for lam in (trainer.cfg.rebalance,
                                                                                  READOUT_REBALANCE))

    def bias(boost: float) -> torch.Tensor:
        return -log_trained + boost * log_boosted

    recs = random.Random(args.seed).sample(trainer.val_records, min(len(trainer.val_records), args.calibrate_pairs))
    loader = torch.utils.data.DataLoader(CacheDataset(trainer.cache, recs), batch_size=16)
    grid = [(t, b, g) for g in GATE_POWERS for b in BOOSTS for t in TEMPERATURES]
    rows = sweep_readouts(net, (decode(b) for b in loader), [(t, bias(b), g) for t, b, g in grid])
    chosen, vivid = choose_readouts(rows, [g[2] for g in grid], args.calibrate_slack)
    t, boost, power = grid[chosen]
    result = {"pairs": len(recs), "temperature": t, "boost": boost, "gate_power": power,
              "slack": args.calibrate_slack, "logit_bias": bias(boost).tolist(), "chosen": rows[chosen],
              "vivid": {"temperature": grid[vivid][0], "boost": grid[vivid][1],
                        "logit_bias": bias(grid[vivid][1]).tolist(), "chosen": rows[vivid]},
              "grid": [{"temperature": g[0], "boost": g[1], "gate_power": g[2], **r} for g, r in zip(grid, rows)]}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"calibrate: temperature {t}, rebalancing boost {boost}, gate power {power} on {len(recs)} pairs: "
          f"{rows[chosen]}", file=sys.stderr)
    print(f"calibrate: vivid readout: temperature {grid[vivid][0]}, boost {grid[vivid][1]}: {rows[vivid]}",
          file=sys.stderr)
    return result


def stage_export(work: Path, args: argparse.Namespace) -> Path:
    from exemplar_color.colorization.checkpoint import export_release

    cal_path, chosen = work / args.run / "calibration.json", _chosen(work, args)
    out = work / "export" / args.run / "default.safetensors"
    if out.is_file() and all(out.stat().st_mtime >= p.stat().st_mtime for p in (cal_path, chosen) if p.is_file()):
        return out  # exported from this very checkpoint and readout already
    cal = json.loads(cal_path.read_text()) if cal_path.is_file() else {}
    bias = torch.tensor(cal["logit_bias"]) if "logit_bias" in cal else None
    vivid = (cal["vivid"]["temperature"], torch.tensor(cal["vivid"]["logit_bias"])) if "vivid" in cal else None
    return export_release(chosen, out, chroma_gain=args.chroma_gain, temperature=cal.get("temperature"),
                          logit_bias=bias, gate_power=cal.get("gate_power"), vivid=vivid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/default")
    ap.add_argument("--stages", default="all",
                    help=f"comma-separated among {','.join(STAGES)}, or all (every one but pack)")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="folder the pair manifest's paths are relative to (a pack's photos/ on a GPU)")
    ap.add_argument("--vgg-weights", type=Path, default=VGG, help="the full Caffe VGG-19 the matcher uses")
    ap.add_argument("--pack-quality", type=int, default=80, help="pack stage: WebP quality of the photos")
    ap.add_argument("--index-size", type=int, default=160)
    ap.add_argument("--refs", type=int, default=1, help="references per target")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only N of the training photos (a seeded sample): a smoke run of the whole recipe")
    ap.add_argument("--val-fraction", type=float, default=0.04)
    ap.add_argument("--size", type=int, default=128, help="training size (square crops)")
    ap.add_argument("--features", default="relu5_1,relu4_1,relu3_1",
                    help="target feature levels stored in the cache (the hypercolumn sub-net reads them)")
    ap.add_argument("--mirrored", action="store_true",
                    help="cache the mirrored targets' features too, and train on records mirrored with them "
                         "(measured, not the shipped model's recipe: see its model card)")
    ap.add_argument("--arch", choices=("hypercolumn", "unet"), default="hypercolumn")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (hypercolumn: x 128)")
    ap.add_argument("--depth", type=int, default=4, help="hypercolumn: residual blocks")
    ap.add_argument("--rebalance", type=float, default=0.5,
                    help="hypercolumn: class rebalancing lambda in training (1: none; the readout rebalances)")
    ap.add_argument("--cycle-ce", type=float, default=1.0,
                    help="hypercolumn: weight of the chrominance (T'_ab) branch's cross-entropy")
    ap.add_argument("--temperature", type=float, default=0.5, help="hypercolumn: readout temperature")
    ap.add_argument("--calibrate-pairs", type=int, default=240, help="held-out pairs the temperature is chosen on")
    ap.add_argument("--calibrate-slack", type=float, default=0.3,
                    help="ab error (sum of with and without reference) the most colourful temperature may add")
    ap.add_argument("--val-every", type=int, default=200, help="validate every N steps (0: at checkpoints)")
    ap.add_argument("--device", default="auto", help="torch device for the cache and training (auto: CUDA if any)")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-step-epochs", type=int, default=5)
    ap.add_argument("--reference-chroma", type=float, default=1.0,
                    help="chrominance loss on the real-reference branch too (0: as published)")
    ap.add_argument("--saturation", type=float, default=0.5, help="colourfulness-matching loss on that branch")
    ap.add_argument("--run", default="run-hypercolumn", help="folder of the training run inside --work")
    ap.add_argument("--export", choices=("best", "final"), default="best",
                    help="which checkpoint to ship: lowest held-out ab error, or the last step")
    ap.add_argument("--chroma-gain", type=float, default=1.0,
                    help="the shipped model's default chroma gain (1: colours as the distribution gives them)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps (default: all epochs)")
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = ALL if args.stages == "all" else tuple(args.stages.split(","))
    for s in stages:
        if s not in STAGES:
            ap.error(f"unknown stage {s!r}")
    for s in STAGES:
        if s in stages:
            print(f"== {s}", file=sys.stderr)
            fn = globals()[f"stage_{s}"]
            fn(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
