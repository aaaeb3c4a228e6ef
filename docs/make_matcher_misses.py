"""Regenerates docs/matcher_misses.jpg: where the matcher misses on held-out known-transform photos (red: overlap
pixels matched more than 3 px from the truth; blue: outside the overlap), with relu4_1's former radius 6 and no
coherence margin, then as it is now (full VGG-19, five levels).

    python docs/make_matcher_misses.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import known_transform as kt  # noqa: E402
from exemplar_color.correspondence import matcher as m  # noqa: E402

PHOTOS = ("n04040759_radiator", "n03873416_paddle", "kodim07")


def _misses(pair: dict, corr) -> np.ndarray:
    kp = pair["kp"]
    wrong = (((corr.forward - kp.truth).norm(dim=1) > 3) & kp.overlap[:, 0])[0].numpy()
    outside = ~kp.overlap[0, 0].numpy()
    rgb = (pair["img"][0].permute(1, 2, 0).numpy() * 90).astype(np.uint8)  # the photo, dimmed
    rgb[wrong] = (255, 40, 40)
    rgb[outside] = (40, 60, 160)
    return rgb


def main() -> None:
    torch.set_num_threads(2)
    heldout = kt.photo_sets()["heldout"]
    index = [next(i for i, p in enumerate(heldout) if name in p.name) for name in PHOTOS]
    matcher = kt.build_matcher("full")
    # each photo keeps the transform the benchmark gives it (seeded by its place in the held-out list)
    pairs = [p for i, p in enumerate(kt.prepare(heldout[:max(index) + 1], matcher)) if i in index]
    tiles = []
    for pair in pairs:
        row = [(pair["img"][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)]
        for radius, margin in ((6, 0.0), (m.FAST_RADIUS["relu4_1"], m.COHERENCE_MARGIN)):
            m.FAST_RADIUS["relu4_1"], matcher.coherence_margin = radius, margin
            corr = matcher.match_features(pair["ft"], pair["fr"], pair["ref_lab"], pair["lab"].shape[-2:])
            row.append(_misses(pair, corr))
        tiles.append(np.concatenate(row, 1))
    sheet = Image.fromarray(np.concatenate(tiles, 0))
    draw = ImageDraw.Draw(sheet)
    for x, text in ((4, "photo"), (260, "before: radius 6 at relu4_1, no margin"), (516, "now")):
        draw.text((x, 4), text, fill=(255, 255, 0))
    out = Path(__file__).with_name("matcher_misses.jpg")
    sheet.save(out, quality=85)
    print(out)


if __name__ == "__main__":
    main()
