"""Colorize one photo from several references (``Colorizer.colorize(target, [ref1, ref2, ...])``).

Each reference is matched to the target on its own (the target's VGG features computed once); the fusion
(:mod:`exemplar_color.colorization.fusion`) chooses, per target pixel, the reference that matches it best,
smoothed along the target's edges, and records the choice as a label map. With one reference this is exactly
the single-reference path. Only the match stage is this module's own
(:meth:`~exemplar_color.pipeline.Colorizer.read_inputs` reads the photos, :meth:`~exemplar_color.pipeline.Colorizer.colorize_references` runs it): the heads, the full
resolution and the results are the Colorizer's one sequence (:meth:`~exemplar_color.pipeline.Colorizer.colorize_batch`).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..colorization.fusion import fuse_ab, fuse_correspondences, match_scores, reference_weights
from ..colorization.heads import Head
from ..correspondence import Correspondence, Matcher
from ..photos import Photo
from . import stages
from .stages import Matched, MatchView, Prepared

__all__ = ["FUSE_MODES", "match_references"]

FUSE_MODES = ("inputs", "outputs")


def match_references(matcher: Matcher, item: Prepared, photos: Sequence[Photo], fuse: str, size: int,
                     device: torch.device) -> Matched:
    """The match stage with several references (``photos``, read; ``item``: the target at the working size
    ``size``): each matched on its own (the target's features computed once), fused per pixel;
    ``fuse="outputs"`` has each head read every match and blends its colours by the same weights."""
    if fuse not in FUSE_MODES:
        raise ValueError(f"fuse must be one of {FUSE_MODES}, got {fuse!r}")
    t0 = time.perf_counter()
    tl, t = item.tl, item.target
    ft = matcher.features(tl)
    corrs: list[Correspondence] = []
    for r in photos:
        rlab = stages.working_lab(r, size, device)
        corrs.append(stages.match(matcher, tl, rlab, target_features=ft,
                                  reference_features=matcher.features(rlab[:, :1])))
    weights, labels = reference_weights(match_scores(corrs), tl)
    fused = fuse_correspondences(corrs, weights)
    seconds = time.perf_counter() - t0
    fields = [stages.full_fields(c, t.size, r.size) for c, r in zip(corrs, photos)]
    view = MatchView(fused.confidence, fused.warped_ab, fused.similarity[0].cpu().numpy(), photos[0].name,
                     partial(_chosen_forward, [f["forward"] for f in fields], labels), fields[0]["backward"],
                     labels=labels[0].cpu().numpy().astype(np.uint8), references=tuple(p.name for p in photos))

    def inputs(head: Head, l: torch.Tensor) -> tuple[torch.Tensor, None]:
        return head(l, fused), None  # the fused match's confidence is reported, not a head's trust

    def outputs(head: Head, l: torch.Tensor) -> tuple[torch.Tensor, None]:
        return fuse_ab([head(l, c) for c in corrs], weights), None

    return Matched(fused, [view], seconds, inputs if fuse == "inputs" else outputs)


def _chosen_forward(forwards: list, labels: torch.Tensor) -> np.ndarray:
    """Full-size ``forward``: each target pixel's match in the reference its label names (that reference's
    original pixels), from each reference's ``forward`` (computed here, when the result's is first read)."""
    full = np.stack([f() for f in forwards])
    h, w = full.shape[1:3]
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[0, 0].long().cpu().numpy()
    return np.take_along_axis(full, lab[None, :, :, None], 0)[0]
