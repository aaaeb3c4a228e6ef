"""Similarity sub-net speed: one 256x256 pair, all five levels relu5_1..relu1_1, both directions, similarity
maps and warping (VGG forward included), against the VGG-19 floor of the same images in the same run.
Also end-to-end colorize seconds per 256 pair and per 4000x3000 photo, and peak memory.

Real photos (so the fields have the coherence real fields have), random weights (timing does not depend
on the weight values; pass --vgg-weights for real ones).

The similarity sub-net is timed in both precisions (``float32``; ``mixed``: bfloat16 beyond relu2_1, the
default where the device computes bfloat16 natively); ``--cpu-time`` times CPU seconds at one thread, which
neighbour processes on a shared machine do not inflate.

    python benchmarks/bench_correspondence.py [--quick] [--device cpu|cuda] [--batch 16] [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import common
from common import peak_memory, reset_peak_memory, timeit, vgg_floor

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TARGET = SHARED / "data" / "kodak" / "kodim05.png"
REFERENCE = SHARED / "data" / "kodak" / "kodim23.png"


def _pair(device: str, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    from exemplar_color.color import rgb_to_lab
    from exemplar_color.io import load_image
    from exemplar_color.layout import to_tensor
    from exemplar_color.working import resize

    t = rgb_to_lab(resize(to_tensor(load_image(TARGET, mode="RGB")), (256, 256)))
    r = rgb_to_lab(resize(to_tensor(load_image(REFERENCE, mode="RGB")), (256, 256)))
    return t[:, :1].repeat(batch, 1, 1, 1).to(device), r.repeat(batch, 1, 1, 1).to(device)


def run(quick: bool = False, device: str = "cpu", weights: str = "random", batch: int = 16) -> dict[str, Any]:
    from exemplar_color.backbone import DEFAULT_LEVELS, VGG19Features, choose_variant
    from exemplar_color.correspondence import Matcher
    from exemplar_color.pipeline import Colorizer

    repeats = 2 if quick else 5
    out: dict[str, Any] = {"size": 256, "levels": list(DEFAULT_LEVELS), "weights": weights}
    out["floor_s"] = vgg_floor(device, 256, 1, repeats=repeats)
    variant = choose_variant(weights, None, default="torchvision")  # random weights: as this benchmark always ran
    backbone = VGG19Features(DEFAULT_LEVELS, weights=weights, variant=variant).to(device)
    tl, rlab = _pair(device)
    for precision in ("float32", "mixed"):
        m = Matcher(backbone, precision=precision)
        out[f"similarity_subnet_{precision}_s"] = timeit(lambda: m.match(tl, rlab), repeats=repeats, device=device)
        out[f"similarity_subnet_{precision}_x_floor"] = out[f"similarity_subnet_{precision}_s"] / out["floor_s"]
    matcher = Matcher(backbone)  # the default precision from here on
    out["precision"] = matcher.precision
    reset_peak_memory(device)
    out["similarity_subnet_s"] = timeit(lambda: matcher.match(tl, rlab), repeats=repeats, device=device)
    out["similarity_subnet_peak_bytes"] = peak_memory(device)
    out["similarity_subnet_x_floor"] = out["similarity_subnet_s"] / out["floor_s"]
    if torch.device(device).type == "cuda" and not quick:
        tb, rb = _pair(device, batch)
        out[f"batch{batch}_per_pair_s"] = timeit(lambda: matcher.match(tb, rb), repeats=3, device=device) / batch
        out[f"batch{batch}_pairs_per_s"] = 1 / out[f"batch{batch}_per_pair_s"]
    colorizer = Colorizer(device=device, vgg_weights=weights)
    colorizer.matcher = matcher
    out["colorize_256_s"] = timeit(lambda: colorizer.colorize(TARGET, REFERENCE), repeats=repeats, device=device)
    if not quick:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.png"
            Image.open(TARGET).convert("L").resize((4000, 3000), Image.BICUBIC).save(big)
            reset_peak_memory(device)
            out["colorize_4000x3000_s"] = timeit(lambda: colorizer.colorize(big, REFERENCE), repeats=2, device=device)
            out["colorize_4000x3000_peak_bytes"] = peak_memory(device)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vgg-weights", default="random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds at 1 thread (a shared machine)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.cpu_time:
        common.use_cpu_time()
    result = run(a.quick, a.device, a.vgg_weights, a.batch)
    result["clock"] = "cpu seconds, 1 thread" if a.cpu_time else f"wall seconds, {torch.get_num_threads()} threads"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
