"""The evaluation protocol: which photos, which reference, what is measured (the package docstring tells
the whole harness)."""

from __future__ import annotations

import os
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..baselines import reinhard_transfer
from ..color import l_to_gray, lab_to_image, rgb_to_lab
from ..correspondence.synthetic import random_similarity, similarity_pair
from ..errors import ExemplarColorError
from ..io import list_images, load_image
from ..layout import as_batch, to_array, to_tensor
from ..metrics import colorfulness, image_metrics, vgg_distance
from ..working import is_gray
from .sheet import thumbnail

__all__ = ["MODES", "METHODS", "EvalItem", "Evaluation", "items_from_source", "read_pairs", "given_items",
           "decolorize", "evaluate", "summarize"]

MODES = ("given", "auto", "self-transform")
METHODS = ("result", "no_reference", "vivid", "no_reference_vivid", "analogy", "warped_ab", "reinhard", "gray")


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
def _has_colour(rgb: np.ndarray) -> bool:
    """The pipeline's rule (:func:`~exemplar_color.working.is_gray`): a photo with colour has a ground truth."""
    return rgb.ndim == 3 and not is_gray(to_tensor(rgb))


def decolorize(rgb: np.ndarray) -> np.ndarray:
    """The gray photo ``(H, W)`` float32 in [0, 1] whose Lab lightness is the colour photo's (neutral sRGB
    gray); ``rgb`` in [0, 1], or uint8 (0..255, as PIL gives it)."""
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255.0
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    lightness = rgb_to_lab(to_tensor(rgb))[:, :1]
    return l_to_gray(lightness)[0, 0].numpy().astype(np.float32)


def _warped_only(gray: np.ndarray, warped_ab: np.ndarray) -> np.ndarray:
    """Target L at full size with the working-size warped ab bilinearly upsampled: an 8-bit RGB array
    (rendered like the result image, by :func:`~exemplar_color.color.lab_to_image`)."""
    full_l = rgb_to_lab(to_tensor(np.repeat(gray[..., None], 3, axis=2)))[:, :1]
    ab = F.interpolate(to_tensor(warped_ab), size=full_l.shape[-2:], mode="bilinear", align_corners=False)
    return np.asarray(lab_to_image(full_l, ab))


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
        ref_rgb = to_array(similarity_pair(to_tensor(photo), angle, scale, sx, sy).reference.clamp(0, 1))
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
    vivid = heads.get("vivid")  # the model's vivid readout on the same matches, when it has one
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
    if vivid is not None:
        preds["vivid"] = np.asarray(vivid.image.convert("RGB"))
    alone = alone_vivid = None
    if getattr(colorizer, "colours_alone", False) and mode != "self-transform":  # the same photo, no reference
        alone = colorizer.colorize_alone(gray)
        preds["no_reference"] = np.asarray(alone.image.convert("RGB"))
        if vivid is not None:
            alone_vivid = colorizer.colorize_alone(gray, head="vivid")
            preds["no_reference_vivid"] = np.asarray(alone_vivid.image.convert("RGB"))
    preds["gray"] = np.repeat(gray[..., None], 3, 2)  # leaving the photo gray (ab = 0)

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
    th = {"gray": thumbnail(gray, thumb_size), "reference": thumbnail(ref_rgb, thumb_size),
          "result": thumbnail(result.image, thumb_size), "warped_ab": thumbnail(warped, thumb_size),
          "analogy": None if analogy is None else thumbnail(analogy.image, thumb_size),
          "no_reference": None if alone is None else thumbnail(alone.image, thumb_size),
          "vivid": None if vivid is None else thumbnail(vivid.image, thumb_size),
          "no_reference_vivid": None if alone_vivid is None else thumbnail(alone_vivid.image, thumb_size),
          "reinhard": thumbnail(reinhard, thumb_size), "ground truth": thumbnail(gt, thumb_size)}
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


