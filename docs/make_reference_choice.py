"""Regenerates docs/reference_choice.jpg (the README's "Choosing a reference" picture): one real black-and-white
photo coloured with a poor reference and with a good one (the default model, full VGG-19, five levels).

    nice -n 19 python docs/make_reference_choice.py [--vgg-weights PATH]

The target is a silver sedan (`legacy-gray/toyota_camry.jpg`); the poor reference is a red convertible on a
lawn, the good one a silver minivan on a street (both from `imagenet-sample`).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from exemplar_color import Colorizer

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
TARGET = DATA / "legacy-gray" / "toyota_camry.jpg"
REFERENCES = (("poor reference: red convertible", DATA / "imagenet-sample" / "n03100240_convertible.JPEG"),
              ("good reference: silver minivan", DATA / "imagenet-sample" / "n03770679_minivan.JPEG"))
HEIGHT = 200
GAP = 4
LABEL = 14


def _thumb(im: Image.Image, height: int = HEIGHT) -> Image.Image:
    im = im.convert("RGB")
    return im.resize((round(im.width * height / im.height), height), Image.LANCZOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg-weights", type=Path, default=SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = Colorizer(device="cpu", vgg_weights=args.vgg_weights)
    # top: the target, then for each reference: the reference and the result
    cells = [("black-and-white photo", _thumb(Image.open(TARGET).convert("L")))]
    for name, ref in REFERENCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = c.colorize(TARGET, ref)
        cells.append((name, _thumb(Image.open(ref))))
        cells.append(("result", _thumb(result.image)))
    width = sum(im.width for _, im in cells) + GAP * (len(cells) - 1)
    sheet = Image.new("RGB", (width, LABEL + HEIGHT), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for name, im in cells:
        draw.text((x + 3, 1), name, fill="black")
        sheet.paste(im, (x, LABEL))
        x += im.width + GAP
    out = Path(__file__).with_name("reference_choice.jpg")
    sheet.save(out, quality=85)
    print(out, sheet.size, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
