"""The contact sheet of an evaluation: one column per photo, one row per kind of picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHEET_ROWS", "thumbnail", "contact_sheet", "sheet_rows", "sheet_sample"]

SHEET_ROWS = ("gray", "reference", "result", "no_reference", "vivid", "no_reference_vivid", "analogy", "warped_ab",
              "reinhard", "ground truth")
ROW_LABELS = {"no_reference_vivid": "no ref vivid"}  # the label column is 92 px wide


def thumbnail(img: np.ndarray | Image.Image | None, size: int) -> Image.Image | None:
    if img is None:
        return None
    if isinstance(img, np.ndarray):
        arr = img if img.dtype == np.uint8 else np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(arr)
    img = img.convert("RGB")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img



def contact_sheet(thumbnails: Sequence[tuple[str, dict[str, Image.Image | None]]], thumb_size: int = 128,
                  columns: int = 12, rows: Sequence[str] = SHEET_ROWS) -> Image.Image:
    """A grid: one column per image, one row per kind (gray / reference / result / baselines / ground
    truth), wrapped every ``columns`` images; a missing picture (no ground truth) is left blank."""
    label_w, gap, caption_h = 92, 4, 14
    n = max(1, len(thumbnails))
    cols = min(columns, n)
    blocks = math.ceil(n / cols)
    cell = thumb_size + gap
    # each block's row height is its tallest thumbnail (landscape photos do not leave square gaps)
    row_h = []
    for b in range(blocks):
        hs = [im.height for _, th in thumbnails[b * cols:(b + 1) * cols] for im in th.values() if im is not None]
        row_h.append(max(hs, default=thumb_size))
    block_h = [caption_h + len(rows) * (h + gap) + gap for h in row_h]
    sheet = Image.new("RGB", (label_w + cols * cell + gap, sum(block_h) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    tops = [gap + sum(block_h[:b]) for b in range(blocks)]
    for i, (name, th) in enumerate(thumbnails):
        b, c = divmod(i, cols)
        x0, y0, h = label_w + gap + c * cell, tops[b], row_h[b]
        draw.text((x0, y0), Path(name).stem[: max(4, thumb_size // 7)], fill="black")
        for r, kind in enumerate(rows):
            img = th.get(kind)
            y = y0 + caption_h + r * (h + gap)
            if img is None:
                draw.rectangle([x0, y, x0 + thumb_size - 1, y + h - 1], outline=(200, 200, 200))
                draw.text((x0 + 4, y + 4), "n/a", fill=(150, 150, 150))
                continue
            sheet.paste(img, (x0 + (thumb_size - img.width) // 2, y + (h - img.height) // 2))
    for b in range(blocks):
        for r, kind in enumerate(rows):
            y = tops[b] + caption_h + r * (row_h[b] + gap) + row_h[b] // 2 - 6
            draw.text((4, y), ROW_LABELS.get(kind, kind), fill="black")
    return sheet


def sheet_rows(methods: Sequence[str], ground_truth: bool) -> tuple[str, ...]:
    return tuple(r for r in SHEET_ROWS if (r in methods or r in ("gray", "reference") or
                                           (r == "ground truth" and ground_truth)))


def sheet_sample(n: int, sheet_max: int | None) -> list[int]:
    """Indices of the images shown on the contact sheet: all, or ``sheet_max`` evenly spaced ones."""
    if sheet_max is None or n <= sheet_max:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / max(1, sheet_max - 1))) for i in range(sheet_max)})
