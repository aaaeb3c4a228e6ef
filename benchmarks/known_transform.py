"""Correspondence accuracy on photos under a known transform, per photo (an accuracy benchmark, not speed).

Each photo (centre square, 256 px) is the target's L; the reference is the colour photo under a random
similarity transform (rotation within +-10 deg, scale 0.9-1.1, shift up to 8%), so the right match of every
pixel is known. Per photo: the share of overlap pixels matched within 3 px, the PSNR of colouring the photo
through the match (warped ab with its own L, overlap only), and where the misses lie (flat areas, near the
border of the overlap) to say why a photo falls short.

Photos come from four sources of ../shared/data (8 + 12 of each), drawn once by a seeded shuffle per source into
two disjoint fixed lists (known_transform_photos.json): ``tune`` (for choosing the matcher's settings) and
``heldout`` (for reporting them). No file named in tests/ is in either, so the test suite's photos are never
tuned on (checked at every run).

    python benchmarks/known_transform.py --set heldout --weights full            # relu5_1..relu1_1, Caffe
    python benchmarks/known_transform.py --set heldout --weights slices          # relu3_1..relu1_1
    python benchmarks/known_transform.py --set tune --per-source 8 --out /tmp/kt.json
    python benchmarks/known_transform.py --precision float32 ...   # against the default mixed precision
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
SOURCES = {
    "imagenet-sample": "imagenet-sample/*.JPEG",
    "imagenet-val-227": "imagenet-val-227/images/*",
    "bsds500": "bsds500/*/*.jpg",
    "kodak": "kodak/*.png",
}
WEIGHTS = {
    "full": (SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth",
             ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")),
    "slices": (SHARED / "weights" / "vgg19-torchvision-features-0-10.pth", ("relu3_1", "relu2_1", "relu1_1")),
}
PHOTO_LIST = Path(__file__).with_name("known_transform_photos.json")
SPLIT_SEED = 11
TUNE_PER_SOURCE = 8
FLAT_STD = 2.0  # L units: a 7x7 window whose L varies less than this is "flat" (sky, water, walls)
BORDER_PX = 8  # misses within this many pixels of the overlap's edge count as "overlap border"


def test_suite_names() -> set[str]:
    """Every image file name written in tests/*.py: never tuned on, never reported as unseen."""
    names: set[str] = set()
    for f in (REPO / "tests").glob("*.py"):
        names |= set(re.findall(r"[\w\-]+\.(?:JPEG|jpg|png)", f.read_text()))
    return names


def photo_sets(per_source: int = 12) -> dict[str, list[Path]]:
    """``{"tune": [...], "heldout": [...], "left_out": [...]}`` from ``known_transform_photos.json`` (the first
    ``per_source`` held-out photos of each source). The lists are fixed so that tests adding photos never move
    them; they were drawn once by :func:`draw_photo_sets`. A tuning photo that tests/ names is an error; a
    held-out photo that tests/ names (a test added later) is left out of the report and listed."""
    fixed = json.loads(PHOTO_LIST.read_text())
    banned = test_suite_names()
    clash = [p for p in fixed["tune"] if Path(p).name in banned]
    if clash:
        raise SystemExit(f"{PHOTO_LIST.name}: {clash} are used by tests/; the photos tuned on must not be")
    heldout = [p for src in SOURCES for p in [q for q in fixed["heldout"] if q.startswith(src + "/")][:per_source]]
    return {"tune": [DATA / p for p in fixed["tune"]],
            "heldout": [DATA / p for p in heldout if Path(p).name not in banned],
            "left_out": [DATA / p for p in heldout if Path(p).name in banned]}


def draw_photo_sets(per_source: int = 12) -> dict[str, list[str]]:
    """The rule that drew the fixed lists: per source, a seeded shuffle of the photos tests/ does not name;
    the first ``TUNE_PER_SOURCE`` to tune on, the next ``per_source`` to report on."""
    banned = test_suite_names()
    out: dict[str, list[str]] = {"tune": [], "heldout": []}
    for i, pattern in enumerate(SOURCES.values()):
        files = [p for p in sorted(DATA.glob(pattern)) if p.name not in banned]
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED + i)).tolist()
        out["tune"] += [str(files[j].relative_to(DATA)) for j in order[:TUNE_PER_SOURCE]]
        out["heldout"] += [str(files[j].relative_to(DATA)) for j in order[TUNE_PER_SOURCE:TUNE_PER_SOURCE + per_source]]
    return out


def load_square(path: Path, size: int = 256) -> torch.Tensor:
    """Centre square of a photo at ``size`` px, RGB ``(1, 3, size, size)`` in [0, 1]."""
    from exemplar_color.io import load_image
    from exemplar_color.working import resize, to_tensor

    img = to_tensor(load_image(path, mode="RGB"))
    h, w = img.shape[-2:]
    s = min(h, w)
    img = img[:, :, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(img, (size, size)).clamp(0, 1)


def prepare(paths: list[Path], matcher, size: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    """Known-transform pairs with their features computed once (so settings can be compared cheaply)."""
    from exemplar_color.color import rgb_to_lab
    from exemplar_color.correspondence.synthetic import random_similarity, similarity_pair

    out = []
    for k, path in enumerate(paths):
        img = load_square(path, size)
        kp = similarity_pair(img, *random_similarity(torch.Generator().manual_seed(seed * 1000 + k)))
        lab, ref_lab = rgb_to_lab(img), rgb_to_lab(kp.reference.clamp(0, 1))
        both = matcher.features(torch.cat([lab[:, :1], ref_lab[:, :1]]))
        out.append({"path": path, "img": img, "lab": lab, "kp": kp, "ref_lab": ref_lab,
                    "ft": {lv: f[:1] for lv, f in both.items()}, "fr": {lv: f[1:] for lv, f in both.items()}})
    return out


def psnr_overlap(img: torch.Tensor, lab: torch.Tensor, ab: torch.Tensor, overlap: torch.Tensor) -> float:
    """PSNR (8-bit RGB) of the photo's own L with ``ab``, over the overlap."""
    from exemplar_color.color import lab_to_rgb

    rgb = lab_to_rgb(torch.cat([lab[:, :1], ab], 1))
    mse = ((rgb * 255).round() - (img * 255).round()).pow(2).mean(1, keepdim=True)[overlap].mean().item()
    return 10 * math.log10(255 ** 2 / max(mse, 1e-12))


def _near_edge(overlap: torch.Tensor, px: int) -> torch.Tensor:
    """Overlap pixels within ``px`` of its edge (or of the image's edge)."""
    outside = F.pad((~overlap).float(), (px,) * 4, value=1.0)
    return (F.max_pool2d(outside, 2 * px + 1, stride=1) > 0) & overlap


def _flat(l: torch.Tensor, k: int = 7) -> torch.Tensor:
    mean = F.avg_pool2d(l, k, 1, k // 2, count_include_pad=False)
    var = F.avg_pool2d(l * l, k, 1, k // 2, count_include_pad=False) - mean ** 2
    return var.clamp_min(0).sqrt() < FLAT_STD


def score(pair: dict[str, Any], corr) -> dict[str, Any]:
    """Per-photo figures of one match."""
    kp, ov = pair["kp"], pair["kp"].overlap
    err = (corr.forward - kp.truth).norm(dim=1, keepdim=True)
    miss = (err > 3) & ov
    n_miss = max(int(miss.sum()), 1)
    return {
        "photo": f"{pair['path'].parent.name}/{pair['path'].name}",
        "within_3px": (err[ov] <= 3).float().mean().item(),
        "psnr_db": psnr_overlap(pair["img"], pair["lab"], corr.warped_ab, ov),
        "median_error_px": err[ov].median().item(),
        "flat_share": _flat(pair["lab"][:, :1])[ov].float().mean().item(),
        "misses_flat": (miss & _flat(pair["lab"][:, :1])).sum().item() / n_miss,
        "misses_overlap_border": (miss & _near_edge(ov, BORDER_PX)).sum().item() / n_miss,
    }


def evaluate(matcher, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [score(p, matcher.match_features(p["ft"], p["fr"], p["ref_lab"], p["lab"].shape[-2:])) for p in pairs]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    w = np.array([r["within_3px"] for r in rows])
    db = np.array([r["psnr_db"] for r in rows])
    return {"photos": len(rows), "within_3px_mean": float(w.mean()), "within_3px_min": float(w.min()),
            "within_3px_p10": float(np.percentile(w, 10)), "within_3px_median": float(np.median(w)),
            "below_95": int((w < 0.95).sum()), "psnr_db_mean": float(db.mean()),
            "psnr_db_median": float(np.median(db)), "psnr_db_min": float(db.min())}


def build_matcher(weights: str, **kwargs):
    from exemplar_color.backbone import VGG19Features
    from exemplar_color.correspondence import Matcher

    path, levels = WEIGHTS[weights]
    return Matcher(VGG19Features(levels, weights=path), **kwargs)


def run(weights: str = "full", which: str = "heldout", per_source: int = 12, size: int = 256,
        precision: str = "auto") -> dict[str, Any]:
    matcher = build_matcher(weights, precision=precision)
    sets = photo_sets(per_source)
    paths = sets[which]
    start = time.perf_counter()
    pairs = prepare(paths, matcher, size)
    rows = evaluate(matcher, pairs)
    return {"weights": weights, "levels": list(matcher.levels), "set": which, "size": size,
            "precision": matcher.precision,
            "summary": summary(rows), "seconds": time.perf_counter() - start,
            "left_out_used_by_tests": [str(p.relative_to(DATA)) for p in sets["left_out"] if which == "heldout"],
            "photos": sorted(rows, key=lambda r: r["within_3px"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", choices=tuple(WEIGHTS), default="full")
    ap.add_argument("--set", dest="which", choices=("tune", "heldout"), default="heldout")
    ap.add_argument("--per-source", type=int, default=12, help="photos per source in each set (4 sources)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("auto", "float32", "mixed"), default="auto",
                    help="the matcher's backbone arithmetic (auto: mixed where bfloat16 is native)")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    result = run(a.weights, a.which, a.per_source, a.size, a.precision)
    text = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
