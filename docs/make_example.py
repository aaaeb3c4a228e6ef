"""Regenerates docs/example.jpg (the README picture): published legacy pairs from ../shared, colorized by
the shipped sub-net and by the analogy head on the same matches (full VGG-19, five levels).

    python docs/make_example.py
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from exemplar_color import Colorizer

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PAIRS = SHARED / "data" / "exemplar-pairs" / "legacy"
HEIGHT = 200
COLUMNS = ("target", "reference", "trained sub-net", "analogy head", "warped colours", "confidence")


def _thumb(im: Image.Image) -> Image.Image:
    im = im.convert("RGB")
    return im.resize((round(im.width * HEIGHT / im.height), HEIGHT), Image.LANCZOS)


def main() -> None:
    torch.set_num_threads(2)
    c = Colorizer(device="cpu", vgg_weights=SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth")
    rows = []
    for i in (1, 3, 6):
        target, reference = PAIRS / f"in{i}.JPEG", PAIRS / f"ref{i}.JPEG"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = c.colorize_heads(target, reference)
        net, ana = out["network"], out["analogy"]
        ims = [_thumb(Image.open(target).convert("L")), _thumb(Image.open(reference)), _thumb(net.image),
               _thumb(ana.image), _thumb(net.warped_image), _thumb(net.confidence_image())]
        row = Image.new("RGB", (sum(x.width + 4 for x in ims), HEIGHT), "white")
        x = 0
        for im in ims:
            row.paste(im, (x, 0))
            x += im.width + 4
        rows.append((row, [im.width for im in ims]))
    width = max(r.width for r, _ in rows)
    sheet = Image.new("RGB", (width, 16 + sum(r.height + 4 for r, _ in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for name, w in zip(COLUMNS, rows[0][1]):
        draw.text((x + 4, 2), name, fill="black")
        x += w + 4
    y = 16
    for r, _ in rows:
        sheet.paste(r, (0, y))
        y += r.height + 4
    sheet.save(Path(__file__).with_name("example.jpg"), quality=88)
    print(sheet.size)


if __name__ == "__main__":
    main()
