"""Evaluation harness behind ``exemplar-color evaluate``: decolorize, colorize back, measure, report.

Each colour photo (the ground truth) is turned into its gray version (its own CIE Lab lightness shown
as a neutral sRGB gray, in float, so the colorizer gets exactly the ground truth's L), colorized with a
reference chosen by one of three modes, and compared with the ground truth:

* ``self-transform``: the reference is a randomly similarity-transformed copy of the ground truth
  (rotation, scale, shift; seeded per image name), the known-correspondence case: a perfect matcher
  recovers the ground truth wherever the copy overlaps it.
* ``given``: pairs files with lines ``target reference [anything]``, paths relative to the file's folder.
  A target that is already gray has no ground truth: its row carries only no-reference figures
  (colourfulness), and the means are over the images that have one.
* ``auto``: the reference is the best match from the Colorizer's gallery index.

Every image is scored for each method on the same correspondence, so a report says what each stage adds:

* ``result``: the full pipeline (``Colorizer.colorize``'s image, with the Colorizer's head);
* ``analogy``: the analogy head on the same matches, when the pipeline's head is the trained network;
* ``warped_ab``: the target's L with the raw warped reference ab (``result.warped_ab``), bilinearly
  upsampled to full size — what the correspondence alone gives, before the head and edge-aware upsampling;
* ``reinhard``: Reinhard-style global Lab statistics transfer from the same reference
  (:func:`exemplar_color.baselines.reinhard_transfer`); on a gray target this is one global tint.

Unreadable images (target or reference) are recorded under ``failed`` with the reason; the run goes on.
Outputs (``report.json``, ``report.md``, ``contact_sheet.png``) are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .baselines import reinhard_transfer
from .color import l_to_gray, rgb_to_lab
from .correspondence.synthetic import random_similarity, similarity_pair
from .errors import ExemplarColorError
from .io import atomic_write, list_images, load_image
from .metrics import as_batch, colorfulness, image_metrics, vgg_distance

__all__ = ["MODES", "METHODS", "EvalItem", "items_from_source", "read_pairs", "decolorize", "evaluate",
           "summarize", "render_markdown", "contact_sheet", "write_report", "run_evaluation"]

MODES = ("given", "auto", "self-transform")
METHODS = ("result", "analogy", "warped_ab", "reinhard")
METHOD_LABELS = {"result": "exemplar-color (full pipeline)", "analogy": "analogy head (same matches)",
                 "warped_ab": "warped ab alone", "reinhard": "Reinhard global transfer"}
MEAN_KEYS = ("psnr", "ssim", "delta_cf", "ab_error", "edge_ab_error", "colorfulness", "vgg_distance")
SHEET_ROWS = ("gray", "reference", "result", "analogy", "warped_ab", "reinhard", "ground truth")


def methods_of(report: dict[str, Any]) -> tuple[str, ...]:
    """The methods a report scored (``analogy`` only when the pipeline's head was the trained network)."""
    return tuple(m for m in METHODS if m in report.get("summary", {}))


@dataclass
class EvalItem:
    """One photo to evaluate: a display name, the photo, and (``given`` mode) its reference file."""

    name: str
    target: Path
    reference: Path | None = None


# ------------------------------------------------------------------------------------------- inputs
def _image_list_file(path: Path) -> list[Path]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((path.parent / line.split()[0]))
    return out


def items_from_source(source: str | os.PathLike) -> list[EvalItem]:
    """Photos from a folder (recursively, sorted) or a list file (one path per line, relative to it)."""
    src = Path(source)
    if src.is_dir():
        root, files = src, list_images(src)
    elif src.is_file():
        root, files = src.parent, _image_list_file(src)
    else:
        raise ExemplarColorError(f"{src}: no such folder or image list")
    return [EvalItem(_rel(f, root), f) for f in files]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_pairs(pairs_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[EvalItem]:
    """``target reference [...]`` lines (blank lines and ``#`` comments skipped), relative to the file's
    folder; names are relative to ``root`` (default: that folder)."""
    pf = Path(pairs_file)
    if not pf.is_file():
        raise ExemplarColorError(f"{pf}: pairs file not found")
    base = pf.parent
    root = Path(root) if root is not None else base
    items = []
    for n, line in enumerate(pf.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ExemplarColorError(f"{pf}:{n}: expected 'target reference', got {line!r}")
        t = base / parts[0]
        items.append(EvalItem(_rel(t, root), t, base / parts[1]))
    return items


def given_items(source: str | os.PathLike, pairs: Sequence[str | os.PathLike] | None) -> list[EvalItem]:
    """``given`` mode: the pairs files named, or else SOURCE itself (a file) or every ``pairs.txt`` under
    it (a folder), with names relative to SOURCE."""
    src = Path(source)
    root = src if src.is_dir() else src.parent
    if pairs:
        files = [Path(p) for p in pairs]
    elif src.is_file():
        files = [src]
    elif src.is_dir():
        files = sorted(src.rglob("pairs.txt"))
        if not files:
            raise ExemplarColorError(f"{src}: no pairs.txt found; give --pairs FILE (lines 'target reference')")
    else:
        raise ExemplarColorError(f"{src}: no such folder or pairs file")
    return [it for f in files for it in read_pairs(f, root)]


# ------------------------------------------------------------------------------------------ helpers
def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy().astype(np.float32)


def _has_colour(rgb: np.ndarray, tolerance: float = 2.0) -> bool:
    """Same rule as the pipeline: 99% of pixels with |ab| below ``tolerance`` means gray."""
    if rgb.ndim == 2:
        return False
    ab = rgb_to_lab(_chw(rgb))[:, 1:].norm(dim=1).flatten()[:1_000_000]
    return bool(torch.quantile(ab, 0.99) >= tolerance)


def decolorize(rgb: np.ndarray) -> np.ndarray:
    """The gray photo ``(H, W)`` float32 whose Lab lightness is the colour photo's (neutral sRGB gray)."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    lightness = rgb_to_lab(_chw(rgb))[:, :1]
    return l_to_gray(lightness)[0, 0].numpy().astype(np.float32)


def _warped_only(gray: np.ndarray, warped_ab: np.ndarray) -> np.ndarray:
    """Target L at full size with the working-size warped ab bilinearly upsampled: an 8-bit RGB array."""
    from .pipeline import _to_pil  # same Lab -> sRGB rendering (gamut handling) as the result image

    full_l = rgb_to_lab(_chw(np.repeat(gray[..., None], 3, axis=2)))[:, :1]
    ab = torch.from_numpy(np.ascontiguousarray(warped_ab, dtype=np.float32)).permute(2, 0, 1)[None]
    ab = F.interpolate(ab, size=full_l.shape[-2:], mode="bilinear", align_corners=False)
    return np.asarray(_to_pil(full_l, ab))


def _thumb(img: np.ndarray | Image.Image | None, size: int) -> Image.Image | None:
    if img is None:
        return None
    if isinstance(img, np.ndarray):
        arr = img if img.dtype == np.uint8 else np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(arr)
    img = img.convert("RGB")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("inf", "nan"), numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return x


# ------------------------------------------------------------------------------------------ running
@dataclass
class Evaluation:
    """What :func:`evaluate` returns: the JSON-able report and the contact-sheet thumbnails."""

    report: dict[str, Any]
    thumbnails: list[tuple[str, dict[str, Image.Image | None]]] = field(default_factory=list)


def _seed_for(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def evaluate(items: Iterable[EvalItem], colorizer: Any, mode: str, *, seed: int = 0, thumb_size: int = 128,
             progress: Callable[[Iterable], Iterable] | None = None) -> Evaluation:
    """Run every item through ``colorizer`` and the two baselines; per-image rows, means, timings.

    Args:
        items: the photos (see :func:`items_from_source`, :func:`given_items`).
        colorizer: an :class:`exemplar_color.Colorizer` (with an index for ``auto``).
        mode: one of :data:`MODES`.
        seed: base seed of the ``self-transform`` references (each image's is derived from its name, so
            ``--limit`` and the order do not change an image's reference).
        thumb_size: long side of the contact-sheet thumbnails kept in memory.
    """
    if mode not in MODES:
        raise ExemplarColorError(f"unknown reference mode {mode!r}; choose one of {', '.join(MODES)}")
    items = list(items)
    rows, failed, thumbs = [], [], []
    start = time.perf_counter()
    for item in (progress(items) if progress else items):
        try:
            row, th = _evaluate_one(item, colorizer, mode, seed, thumb_size)
        except (ExemplarColorError, OSError, ValueError) as e:
            failed.append({"name": item.name, "target": str(item.target),
                           "reference": None if item.reference is None else str(item.reference),
                           "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append(row)
        thumbs.append((item.name, th))
    report = {"mode": mode, "images": rows, "failed": failed, "summary": summarize(rows),
              "n_images": len(items), "n_evaluated": len(rows), "n_failed": len(failed),
              "n_with_ground_truth": sum(1 for r in rows if r["ground_truth"]),
              "seconds": round(time.perf_counter() - start, 3)}
    return Evaluation(report, thumbs)


def _evaluate_one(item: EvalItem, colorizer: Any, mode: str, seed: int, thumb_size: int):
    t0 = time.perf_counter()
    photo = load_image(item.target, "auto")
    has_gt = _has_colour(photo)
    if mode in ("self-transform", "auto") and not has_gt:
        raise ExemplarColorError(f"{item.target}: a gray photo has no colour ground truth; "
                                 f"{mode} mode evaluates colour photos")
    gt = photo if has_gt else None
    gray = decolorize(photo)
    transform = None
    if mode == "self-transform":
        angle, scale, sx, sy = random_similarity(torch.Generator().manual_seed(_seed_for(seed, item.name)))
        transform = {"angle_deg": angle, "scale": scale, "shift_x": sx, "shift_y": sy}
        ref_rgb = _hwc(similarity_pair(_chw(photo), angle, scale, sx, sy).reference)
        ref_input: Any = ref_rgb
    elif mode == "given":
        if item.reference is None:
            raise ExemplarColorError(f"{item.name}: given mode needs a reference (pairs file)")
        ref_rgb = load_image(item.reference, "RGB")
        ref_input = item.reference
    else:
        ref_rgb, ref_input = None, None
    prep_s = time.perf_counter() - t0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        heads = colorizer.colorize_heads(gray, ref_input)
    result = heads[colorizer.head_name]
    analogy = heads.get("analogy") if colorizer.head_name != "analogy" else None
    if ref_rgb is None:  # auto: the reference the index chose
        ref_rgb = load_image(result.reference, "RGB")

    t1 = time.perf_counter()
    warped = _warped_only(gray, result.warped_ab)
    t2 = time.perf_counter()
    reinhard = reinhard_transfer(gray, ref_rgb)
    t3 = time.perf_counter()
    preds = {"result": np.asarray(result.image.convert("RGB")), "warped_ab": warped, "reinhard": reinhard}
    if analogy is not None:
        preds["analogy"] = np.asarray(analogy.image.convert("RGB"))

    metrics = {}
    vgg = getattr(colorizer, "backbone", None)
    for method, pred in preds.items():
        if gt is not None:
            metrics[method] = image_metrics(pred, gt)
            if vgg is not None:
                metrics[method]["vgg_distance"] = _vgg_distance(pred, gt, vgg)
        else:
            metrics[method] = {"colorfulness": float(colorfulness(pred))}
    t4 = time.perf_counter()

    timings = {k: round(v, 4) for k, v in result.timings.items()}
    timings.update({"prepare_s": round(prep_s, 4), "warped_ab_baseline_s": round(t2 - t1, 4),
                    "reinhard_baseline_s": round(t3 - t2, 4), "metrics_s": round(t4 - t3, 4)})
    row = {"name": item.name, "target": str(item.target),
           "reference": (str(item.reference) if mode == "given" else
                         result.reference if mode == "auto" else "self-transform"),
           "size": list(gray.shape), "ground_truth": gt is not None, "metrics": metrics, "timings": timings,
           "mean_confidence": float(np.mean(result.confidence)),
           "reference_colorfulness": float(colorfulness(ref_rgb)),
           "warnings": [str(w.message) for w in caught]}
    if transform is not None:
        row["transform"] = transform
    th = {"gray": _thumb(gray, thumb_size), "reference": _thumb(ref_rgb, thumb_size),
          "result": _thumb(result.image, thumb_size), "warped_ab": _thumb(warped, thumb_size),
          "analogy": None if analogy is None else _thumb(analogy.image, thumb_size),
          "reinhard": _thumb(reinhard, thumb_size), "ground truth": _thumb(gt, thumb_size)}
    return row, th


def _vgg_distance(pred: np.ndarray, gt: np.ndarray, vgg: Any, short_side: int = 256) -> float:
    """VGG feature distance at a short side of ``short_side`` (where VGG's levels see objects as in
    training and LPIPS is usually quoted; full-size photos would mostly measure texture)."""
    (p, _), (g, _) = as_batch(pred, dtype=torch.float32), as_batch(gt, dtype=torch.float32)
    s = short_side / min(p.shape[-2:])
    if s < 1:
        size = (round(p.shape[-2] * s), round(p.shape[-1] * s))
        p, g = (F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False) for x in (p, g))
    return float(vgg_distance(p.clamp(0, 1), g.clamp(0, 1), vgg)[0])


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean of each metric over the images with a ground truth (colourfulness over all), and
    the dataset-level ΔCF ``|mean CF(method) - mean CF(ground truth)|`` that papers also quote."""
    out: dict[str, dict[str, Any]] = {}
    with_gt = [r for r in rows if r["ground_truth"]]
    for m in METHODS:
        if not rows or m not in rows[0]["metrics"]:
            continue
        s: dict[str, Any] = {"n": len(with_gt)}
        for k in ("psnr", "ssim", "delta_cf", "ab_error", "edge_ab_error", "vgg_distance"):
            vals = [r["metrics"][m][k] for r in with_gt if k in r["metrics"][m]]
            s[k] = float(np.mean(vals)) if vals else None
        cf = [r["metrics"][m]["colorfulness"] for r in rows]
        s["colorfulness"] = float(np.mean(cf)) if cf else None
        if with_gt:
            s["colorfulness_gt"] = float(np.mean([r["metrics"][m]["colorfulness_gt"] for r in with_gt]))
            s["delta_cf_dataset"] = abs(float(np.mean([r["metrics"][m]["colorfulness"] for r in with_gt]))
                                        - s["colorfulness_gt"])
        out[m] = s
    if rows:
        out["reference_colorfulness"] = float(np.mean([r["reference_colorfulness"] for r in rows]))
        keys = rows[0]["timings"].keys()
        out["timings_mean_s"] = {k: float(np.mean([r["timings"].get(k, 0.0) for r in rows])) for k in keys}
    return out


# ------------------------------------------------------------------------------------------ outputs
def versions() -> dict[str, Any]:
    from ._version import __version__
    import PIL

    v = {"exemplar_color": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
         "numpy": np.__version__, "pillow": PIL.__version__, "platform": platform.platform(),
         "machine": platform.machine(), "cpu_threads": torch.get_num_threads()}
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            v["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return v


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    cfg, s = report.get("configuration", {}), report["summary"]
    lines = [f"# Colorization evaluation: {cfg.get('source', '')}", "",
             f"Reference mode **{report['mode']}**; {report['n_evaluated']} of {report['n_images']} images "
             f"evaluated, {report['n_with_ground_truth']} with a colour ground truth, {report['n_failed']} failed. "
             f"Head: {cfg.get('head', '?')}"
             + (f" (chroma gain {cfg['chroma_gain']:g})" if cfg.get("chroma_gain") else "")
             + f"; working size {cfg.get('size', '?')}; levels "
             f"{' '.join(cfg.get('levels', []))}; device {cfg.get('device', '?')}.", ""]
    methods = methods_of(report)
    lines += ["| method | PSNR (dB) ↑ | SSIM ↑ | ΔCF ↓ | ab error ↓ | at edges ↓ | VGG distance ↓ | colourfulness |",
              "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        r = s.get(m, {})
        lines.append(f"| {METHOD_LABELS[m]} | {_fmt(r.get('psnr'))} | {_fmt(r.get('ssim'), 4)} | "
                     f"{_fmt(r.get('delta_cf'))} | {_fmt(r.get('ab_error'))} | {_fmt(r.get('edge_ab_error'))} | "
                     f"{_fmt(r.get('vgg_distance'), 4)} | "
                     f"{_fmt(r.get('colorfulness'))} |")
    if report["n_with_ground_truth"]:
        gt_cf = s["result"].get("colorfulness_gt")
        lines += ["", f"Means over the {report['n_with_ground_truth']} images with a ground truth (ground-truth "
                  f"colourfulness {_fmt(gt_cf)}). PSNR/SSIM on RGB (scikit-image conventions), ΔCF = "
                  "|CF(pred) − CF(gt)| per image (Hasler & Süsstrunk), ab error = mean Euclidean ab distance "
                  "(CIE Lab); *at edges*: the same within 2 px of the truth's strongest 10% L gradients, where "
                  "colours that bleed across edges show. Dataset-level ΔCF: " + ", ".join(
                      f"{METHOD_LABELS[m]} {_fmt(s[m].get('delta_cf_dataset'))}" for m in methods) + "."]
    else:
        lines += ["", "No image has a colour ground truth (the targets are gray photos): only colourfulness "
                  "(a no-reference figure) is reported; PSNR/SSIM/ΔCF/ab error need the original colours. "
                  f"Mean colourfulness of the references: {_fmt(s.get('reference_colorfulness'))}."]
    lines += ["", "VGG distance: unit-normalised VGG-19 features of prediction and ground truth at the matching "
              "levels, squared difference summed over channels, averaged (an LPIPS-style figure, not LPIPS).",
              "", "Methods: *exemplar-color* is `Colorizer.colorize`; *analogy head* is the no-training head on the "
              "same correspondence (shown when the pipeline's head is the trained network); *warped ab alone* "
              "is the target's L with the raw warped reference ab bilinearly upsampled (the correspondence without the head and "
              "edge-aware upsampling); *Reinhard* is the global Lab mean/std transfer from the same reference "
              "(on a gray target: one global tint).", ""]
    t = s.get("timings_mean_s")
    if t:
        lines += ["Mean seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()) +
                  f". Whole run: {report['seconds']:.1f} s.", ""]
    sheet_rows = _sheet_rows(methods, bool(report["n_with_ground_truth"]))
    lines += ["![contact sheet](contact_sheet.png)", "",
              "Contact sheet rows: " + " / ".join(sheet_rows) + "." + (
                  f" It shows {len(report['contact_sheet'])} of the {report['n_evaluated']} images (evenly spaced)."
                  if len(report.get("contact_sheet", ())) < report["n_evaluated"] else ""), ""]
    if report["failed"]:
        lines += ["## Failed", ""] + [f"- `{f['name']}`: {f['error']}" for f in report["failed"]] + [""]
    if report["images"]:
        lines += ["## Per image", ""]
        if report["n_with_ground_truth"]:
            names = " / ".join(methods)
            lines += [f"| image | PSNR {names} | ab error {names} | ΔCF result | confidence |", "|---|---|---|---|---|"]
        else:
            lines += [f"| image | colourfulness {' / '.join(methods)} | confidence |", "|---|---|---|"]
        for r in report["images"]:
            mt = r["metrics"]
            if r["ground_truth"]:
                lines.append(f"| {r['name']} | " + " / ".join(_fmt(mt[m]["psnr"]) for m in methods) + " | "
                             + " / ".join(_fmt(mt[m]["ab_error"]) for m in methods) +
                             f" | {_fmt(mt['result']['delta_cf'])} | {_fmt(r['mean_confidence'], 3)} |")
            elif report["n_with_ground_truth"]:
                lines.append(f"| {r['name']} | n/a (gray target) | n/a | n/a | {_fmt(r['mean_confidence'], 3)} |")
            else:
                lines.append(f"| {r['name']} | " + " / ".join(_fmt(mt[m]["colorfulness"]) for m in methods)
                             + f" | {_fmt(r['mean_confidence'], 3)} |")
        lines.append("")
    lines += ["Command: `" + cfg.get("command", "") + "`", ""]
    return "\n".join(lines)


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
            draw.text((4, y), kind, fill="black")
    return sheet


def _sheet_rows(methods: Sequence[str], ground_truth: bool) -> tuple[str, ...]:
    return tuple(r for r in SHEET_ROWS if (r in methods or r in ("gray", "reference") or
                                           (r == "ground truth" and ground_truth)))


def sheet_sample(n: int, sheet_max: int | None) -> list[int]:
    """Indices of the images shown on the contact sheet: all, or ``sheet_max`` evenly spaced ones."""
    if sheet_max is None or n <= sheet_max:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / max(1, sheet_max - 1))) for i in range(sheet_max)})


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike, *, thumb_size: int = 128,
                 columns: int = 12, sheet_max: int | None = None) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``contact_sheet.png`` in ``out_dir``, each written atomically.

    ``sheet_max`` caps the images on the contact sheet (evenly spaced) to keep the PNG small; the
    report lists which were shown."""
    out = Path(out_dir)
    shown = sheet_sample(len(evaluation.thumbnails), sheet_max)
    evaluation.report["contact_sheet"] = [evaluation.thumbnails[i][0] for i in shown]
    thumbnails = [evaluation.thumbnails[i] for i in shown]
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "contact_sheet": out / "contact_sheet.png"}
    any_gt = any(th.get("ground truth") is not None for _, th in thumbnails)
    rows = _sheet_rows(methods_of(evaluation.report), any_gt)
    sheet = contact_sheet(thumbnails, thumb_size, columns, rows)
    with atomic_write(paths["contact_sheet"]) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
        tmp.chmod(0o644)  # a report is for reading (the temporary file is created owner-only)
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps(_clean(evaluation.report), indent=1, allow_nan=False) + "\n")
        tmp.chmod(0o644)
    with atomic_write(paths["markdown"]) as tmp:
        tmp.write_text(render_markdown(evaluation.report))
        tmp.chmod(0o644)
    return paths


def run_evaluation(source: str | os.PathLike, mode: str, colorizer: Any, out_dir: str | os.PathLike, *,
                   pairs: Sequence[str | os.PathLike] | None = None, limit: int | None = None, seed: int = 0,
                   thumb_size: int = 128, columns: int = 12, sheet_max: int | None = None,
                   configuration: dict[str, Any] | None = None,
                   progress: Callable[[Iterable], Iterable] | None = None) -> Evaluation:
    """Gather the items for ``mode``, evaluate them, attach configuration and versions, write the report."""
    if mode == "given":
        items = given_items(source, pairs)
    else:
        items = items_from_source(source)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise ExemplarColorError(f"no images to evaluate in {source}")
    ev = evaluate(items, colorizer, mode, seed=seed, thumb_size=thumb_size, progress=progress)
    cfg = {"source": str(source), "reference_mode": mode, "seed": seed, "limit": limit,
           "pairs": [str(p) for p in pairs] if pairs else None, "head": getattr(colorizer, "head_name", None),
           "size": getattr(colorizer, "size", None), "levels": list(getattr(colorizer, "levels", ())),
           "device": str(getattr(colorizer, "device", "")),
           "vgg_weights": None if getattr(colorizer, "vgg_weights", None) is None else str(colorizer.vgg_weights),
           "vgg_variant": getattr(colorizer, "vgg_variant", None)}
    if getattr(colorizer, "net", None) is not None:
        cfg["chroma_gain"] = colorizer.chroma_gain
    cfg.update(configuration or {})
    ev.report = {"configuration": cfg, "versions": versions(), **ev.report}
    write_report(ev, out_dir, thumb_size=thumb_size, columns=columns, sheet_max=sheet_max)
    return ev
