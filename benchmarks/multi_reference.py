"""Several references per photo against each reference alone, on real photos no single reference covers; JSON.

Protocol (issue 14). Two kinds of cases, from photos of evaluation sets (never training photos):

- **joined**: the target is two Kodak photos of different scenes side by side (gray); the references are
  the two photos, each under its own small random similarity transform (rotation up to 6 degrees, scale
  0.9-1.1, shift up to 6% of the side, then a crop that removes the borders), so neither is a crop of the
  target and each covers one half.
- **halves**: the target is a BSDS500 test photo (gray); the references are the colour photo's left and
  right halves.

Each case is colorized with reference A alone, B alone, and both (fusing the correspondences before the head,
the library's default, and fusing the heads' outputs), with both heads (the trained sub-net shipped with the
package and the analogy head) on the same matches. Metrics against the colour truth at full size: PSNR (RGB,
8-bit) and ab error (mean Euclidean ab distance, CIE Lab); for joined cases also the share of pixels whose
label (the reference chosen) is the half's own photo.

    python benchmarks/multi_reference.py --out docs/reports/multi-reference     # full VGG-19, size 128
    python benchmarks/multi_reference.py --backbone slices --size 96 --cases 2  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
BACKBONES = {
    "slices": dict(vgg_weights=SHARED / "weights" / "vgg19-torchvision-features-0-10.pth",
                   vgg_variant="torchvision", levels=["relu3_1", "relu2_1", "relu1_1"]),
    "full": dict(vgg_weights=SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"),  # default model + VGG
}
JOINED = [("kodim05", "kodim23"), ("kodim01", "kodim20"), ("kodim13", "kodim03"), ("kodim21", "kodim15"),
          ("kodim08", "kodim22"), ("kodim11", "kodim19")]
HALVES = ["100007", "103006", "106005", "108004", "100039", "101027"]
HALF = (192, 128)
HEADS = {True: ("network", "analogy"), False: ("analogy",)}  # with / without a trained model  # each photo of a joined target (width, height)


def moved(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A small random similarity transform, then a crop of the borders the transform left empty."""
    w, h = img.size
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.9, 1.1)
    dx, dy = rng.uniform(-0.06, 0.06, 2) * (w, h)
    out = img.rotate(angle, resample=Image.BICUBIC, translate=(dx, dy))
    out = out.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    m = int(0.12 * min(out.size))
    return out.crop((m, m, out.size[0] - m, out.size[1] - m))


def joined_case(left: str, right: str, rng: np.random.Generator) -> dict:
    a, b = (Image.open(DATA / "kodak" / f"{n}.png").convert("RGB").resize(HALF, Image.BICUBIC) for n in (left, right))
    truth = Image.new("RGB", (2 * HALF[0], HALF[1]))
    truth.paste(a, (0, 0))
    truth.paste(b, (HALF[0], 0))
    return {"name": f"{left}+{right}", "kind": "joined", "truth": truth, "refs": [moved(a, rng), moved(b, rng)]}


def halves_case(name: str) -> dict:
    img = Image.open(DATA / "bsds500" / "test" / f"{name}.jpg").convert("RGB")
    w, h = img.size
    return {"name": name, "kind": "halves", "truth": img, "refs": [img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))]}


def scores(result, truth: Image.Image) -> dict:
    from exemplar_color.metrics import ab_error, psnr

    out, gt = np.asarray(result.image), np.asarray(truth)
    return {"psnr": round(float(psnr(out, gt)), 3), "ab_error": round(float(ab_error(out, gt)), 3)}


def label_accuracy(labels: np.ndarray) -> float:
    half = labels.shape[1] // 2
    return round(float((np.mean(labels[:, :half] == 0) + np.mean(labels[:, half:] == 1)) / 2), 4)


def run_case(c, case: dict) -> tuple[dict, dict]:
    """Figures of one case, and the images for the picture."""
    gray = case["truth"].convert("L")
    a, b = case["refs"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = {"A": c.colorize_heads(gray, a), "B": c.colorize_heads(gray, b),
                "both": c.colorize_heads(gray, [a, b]),
                "both_outputs": c.colorize_references(gray, [a, b], HEADS["network" in c.heads], fuse="outputs")}
    fig = {"name": case["name"], "kind": case["kind"], "seconds": round(time.perf_counter() - t0, 1)}
    for run, heads in runs.items():
        for head, res in heads.items():
            fig[f"{head}/{run}"] = scores(res, case["truth"])
    if case["kind"] == "joined":
        fig["label_accuracy"] = label_accuracy(runs["both"][c.head_name].labels)
    return fig, runs


def summary(figs: list[dict], heads: list[str]) -> dict:
    out: dict = {}
    for kind in sorted({f["kind"] for f in figs}):
        sel = [f for f in figs if f["kind"] == kind]
        row: dict = {"cases": len(sel)}
        for head in heads:
            for metric in ("psnr", "ab_error"):
                better = max if metric == "psnr" else min
                vals = {run: float(np.mean([f[f"{head}/{run}"][metric] for f in sel]))
                        for run in ("A", "B", "both", "both_outputs")}
                vals["best_single"] = float(np.mean([better(f[f"{head}/A"][metric], f[f"{head}/B"][metric]) for f in sel]))
                row[f"{head}/{metric}"] = {k: round(v, 3) for k, v in vals.items()}
            row[f"{head}/both_beats_best_single"] = sum(
                f[f"{head}/both"]["ab_error"] < min(f[f"{head}/A"]["ab_error"], f[f"{head}/B"]["ab_error"]) for f in sel)
        if kind == "joined":
            row["label_accuracy"] = round(float(np.mean([f["label_accuracy"] for f in sel])), 4)
        out[kind] = row
    return out


def picture(case: dict, runs: dict, head: str, path: Path) -> None:
    """One row: gray target, reference A, reference B, result A, result B, both, label map."""
    from exemplar_color.result import LABEL_COLOURS

    truth = case["truth"]
    h = 160
    labels = runs["both"][head].labels
    lab_rgb = Image.fromarray(np.asarray(LABEL_COLOURS[:2], np.uint8)[labels], "RGB")
    tiles = [truth.convert("L").convert("RGB"), *case["refs"], runs["A"][head].image, runs["B"][head].image,
             runs["both"][head].image, lab_rgb]
    tiles = [t.resize((max(1, round(t.width * h / t.height)), h), Image.BICUBIC) for t in tiles]
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 6 * (len(tiles) - 1), h), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 6
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path, quality=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="full")
    ap.add_argument("--size", type=int, default=128, help="working size (short side)")
    ap.add_argument("--cases", type=int, default=4, help="cases of each kind")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json and strip.jpg")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from exemplar_color import Colorizer

    spec = dict(BACKBONES[args.backbone])
    model = "analogy" if args.backbone == "slices" else "default"
    c = Colorizer(device="cpu", size=args.size, model=model, **spec)
    heads = list(HEADS["network" in c.heads])
    rng = np.random.default_rng(args.seed)
    cases = [joined_case(l, r, rng) for l, r in JOINED[:args.cases]] + [halves_case(n) for n in HALVES[:args.cases]]
    figs = []
    for i, case in enumerate(cases):
        fig, runs = run_case(c, case)
        figs.append(fig)
        print(json.dumps(fig), file=sys.stderr)
        if i == 0 and args.out:
            picture(case, runs, c.head_name, args.out / "strip.jpg")
    result = {"benchmark": "multi_reference", "backbone": args.backbone, "levels": list(c.levels), "size": args.size,
              "heads": heads, "seed": args.seed, "machine": {"platform": platform.platform(), "threads": args.threads},
              "summary": summary(figs, heads), "cases": figs}
    text = json.dumps(result, indent=2)
    if args.out:
        (args.out / "results.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
