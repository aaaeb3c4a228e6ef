"""The evaluation report: ``report.json``, ``report.md`` and ``contact_sheet.png``, with the versions that
produced them."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..io import atomic_write
from ..errors import ExemplarColorError
from .protocol import METHODS, Evaluation, evaluate, given_items, items_from_source
from .sheet import contact_sheet, sheet_rows, sheet_sample

__all__ = ["METHOD_LABELS", "methods_of", "versions", "render_markdown", "write_report", "run_evaluation"]

METHOD_LABELS = {"result": "exemplar-color (full pipeline)", "analogy": "analogy head (same matches)",
                 "warped_ab": "warped ab alone", "reinhard": "Reinhard global transfer",
                 "no_reference": "no reference (the sub-net's prior)", "vivid": "vivid readout (same matches)",
                 "no_reference_vivid": "no reference, vivid readout", "gray": "left gray (ab = 0)"}


def methods_of(report: dict[str, Any]) -> tuple[str, ...]:
    """The methods a report scored (``analogy`` only when the pipeline's head was the trained network)."""
    return tuple(m for m in METHODS if m in report.get("summary", {}))


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



def versions() -> dict[str, Any]:
    from .._version import __version__
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
             + (" (vivid readout)" if cfg.get("vivid") else "")
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
    shown_rows = sheet_rows(methods, bool(report["n_with_ground_truth"]))
    lines += ["![contact sheet](contact_sheet.png)", "",
              "Contact sheet rows: " + " / ".join(shown_rows) + "." + (
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
    rows = sheet_rows(methods_of(evaluation.report), any_gt)
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
    if "network" in getattr(colorizer, "heads", {}):
        cfg["chroma_gain"] = colorizer.chroma_gain
        cfg["vivid"] = colorizer.vivid
    cfg.update(configuration or {})
    ev.report = {"configuration": cfg, "versions": versions(), **ev.report}
    write_report(ev, out_dir, thumb_size=thumb_size, columns=columns, sheet_max=sheet_max)
    return ev
