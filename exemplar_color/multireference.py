"""Colorize one photo from several references (``Colorizer.colorize(target, [ref1, ref2, ...])``).

Each reference is matched to the target on its own (the target's VGG features computed once); the fusion
(:mod:`exemplar_color.colorization.fusion`) chooses, per target pixel, the reference that matches it best,
smoothed along the target's edges, and records the choice as a label map. With one reference this is exactly
the single-reference path.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .colorization.fusion import fuse_ab, fuse_correspondences, match_scores, reference_weights
from .correspondence import Correspondence
from .layout import to_array
from .result import ColorizationResult

FUSE_MODES = ("inputs", "outputs")


def colorize_references(colorizer, target: Any, references: Sequence[Any], heads: Sequence[str],
                        fuse: str = "inputs", recommendations: list[Any] | None = None,
                        passed_over: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """``{head: ColorizationResult}`` for ``target`` coloured from ``references`` (images or Photos).

    ``fuse="inputs"`` (default) fuses the correspondences before the head; ``"outputs"`` runs the head on
    each reference and blends the predicted colours by the same weights."""
    from .photos import Photo, read_photo

    if fuse not in FUSE_MODES:
        raise ValueError(f"fuse must be one of {FUSE_MODES}, got {fuse!r}")
    if not references:
        raise ValueError("give at least one reference")
    recs, passed = recommendations or [], passed_over or []
    t0 = time.perf_counter()
    t = target if isinstance(target, Photo) else read_photo(target)
    photos = []
    for i, ref in enumerate(references):
        with warnings.catch_warnings():
            if i:  # a colour target is said once, not once per reference
                warnings.simplefilter("ignore")
            photos.append(colorizer.read_pair(t, ref)[1])
    if len(photos) == 1:  # exactly today's path
        out = colorizer.colorize_pairs([(t, photos[0])], 1, heads)[0]
        for res in out.values():
            h, w = res.confidence.shape
            res.labels = np.zeros((h, w), np.uint8)
            res.references = (photos[0].name,)
            res.recommendations, res.passed_over = recs, passed
        return out

    m = colorizer.matcher
    tl = colorizer.working(t, photos[0])[0]
    ft = m.features(tl)
    corrs: list[Correspondence] = []
    for r in photos:
        rlab = colorizer.working(t, r)[1]
        m.check_size(tl.shape[-2:], rlab.shape[-2:])
        corrs.append(m.match_features(ft, m.features(rlab[:, :1]), rlab, tuple(tl.shape[-2:])))
    weights, labels = reference_weights(match_scores(corrs), tl)
    fused = fuse_correspondences(corrs, weights)
    t_match = time.perf_counter()
    ab = {}
    head_s = {}
    for head in heads:
        h0 = time.perf_counter()
        if fuse == "inputs":
            ab[head] = colorizer.heads[head](tl, fused)
        else:
            ab[head] = fuse_ab([colorizer.heads[head](tl, c) for c in corrs], weights)
        head_s[head] = time.perf_counter() - h0
    fields = [colorizer.full_fields(c, t.size, r.size) for c, r in zip(corrs, photos)]
    forward = partial(_chosen_forward, [f["forward"] for f in fields], labels)
    out = {}
    for head in heads:
        t3 = time.perf_counter()
        full = colorizer.render(t.pixels, tl, ab[head])
        image = full.image()
        timings = {"load_s": 0.0, "match_s": t_match - t0, "head_s": head_s[head],
                   "full_resolution_s": time.perf_counter() - t3}
        timings["total_s"] = sum(timings.values())
        res = ColorizationResult(
            image=image, _ab=full.ab_array, confidence=to_array(fused.confidence),
            warped_ab=to_array(fused.warped_ab), similarity=fused.similarity[0].cpu().numpy(), reference=photos[0].name,
            head=head, levels=colorizer.levels, timings=timings, recommendations=recs, passed_over=passed,
            labels=labels[0].cpu().numpy().astype(np.uint8), references=tuple(p.name for p in photos),
            working_l=tl.cpu(), _forward=forward, _backward=fields[0]["backward"])
        out[head] = res
    return out


def _chosen_forward(forwards: list, labels: torch.Tensor) -> np.ndarray:
    """Full-size ``forward``: each target pixel's match in the reference its label names (that reference's
    original pixels), from each reference's ``forward`` (computed here, when the result's is first read)."""
    full = np.stack([f() for f in forwards])
    h, w = full.shape[1:3]
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[0, 0].long().cpu().numpy()
    return np.take_along_axis(full, lab[None, :, :, None], 0)[0]
