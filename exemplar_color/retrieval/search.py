"""Second-stage ranking: local 7x7-grid feature match plus luminance histograms, as published.

For a target T and a candidate reference R, with unit cell features ``t_i``, ``r_j`` (i, j over the grid):

* ``dist0 = 1 - mean_i max_j cos(t_i, r_j)``: how well every part of the target finds similar content
  somewhere in the reference (position-free, so crops and shifts do not matter);
* ``dist1 = mean_i 1/2 |h_T(i) - h_R(j*(i))|_1``: the luminance histograms of the matched cells differ
  (total-variation distance, in [0, 1]); the reference's colours are transferred by luminance, so cells with
  similar tones transfer better;
* ``score = dist0 + 0.25 dist1`` (the published weight) ``+ class_weight * [class_T != class_R]`` when both
  classes are known: the class is a soft prior, never a filter (misclassification was the original's weak
  spot). Lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Recommendation", "RankWeights", "rerank_scores"]


@dataclass(frozen=True)
class RankWeights:
    """Weights of the second-stage score; defaults are the published ones (class prior: ours)."""

    hist: float = 0.25
    class_prior: float = 0.05
    global_: float = 0.0  # weight of (1 - first-stage cosine); 0 as published


@dataclass
class Recommendation:
    """One recommended reference. ``score``: lower is better; ``parts`` holds its terms."""

    path: str
    score: float
    parts: dict[str, float] = field(default_factory=dict)
    id: int = -1
    relpath: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "relpath": self.relpath, "id": self.id, "score": self.score,
                "parts": dict(self.parts)}


def rerank_scores(t_grid: np.ndarray, t_hist: np.ndarray, c_grid: np.ndarray, c_hist: np.ndarray, *,
                  weights: RankWeights = RankWeights(), t_class: int = -1,
                  c_class: np.ndarray | None = None, c_global: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Score ``n`` candidates against one target, all at once.

    Args:
        t_grid: ``(G*G, C)`` target cells, unit vectors. t_hist: ``(G*G, bins)`` target histograms.
        c_grid: ``(n, G*G, C)`` candidate cells. c_hist: ``(n, G*G, bins)`` candidate histograms.
        t_class, c_class: predicted classes (-1: unknown).
        c_global: ``(n,)`` first-stage cosines, used when ``weights.global_`` > 0.

    Returns:
        ``{"score", "dist0", "dist1", "class"}``, each ``(n,)`` float32.
    """
    n = len(c_grid)
    cells = t_grid.shape[0]
    # one BLAS product for all candidates: (n*cells_R, C) @ (C, cells_T) -> (n, cells_T, cells_R)
    sim = (c_grid.reshape(-1, c_grid.shape[-1]).astype(np.float32, copy=False) @ t_grid.astype(np.float32).T)
    sim = sim.reshape(n, -1, cells).transpose(0, 2, 1)
    best = sim.argmax(2)  # (n, cells): j*(i)
    dist0 = np.maximum(1.0 - np.take_along_axis(sim, best[:, :, None], 2)[:, :, 0].mean(1), 0.0)
    matched = np.take_along_axis(c_hist, best[:, :, None], 1)  # (n, cells, bins)
    dist1 = 0.5 * np.abs(matched - t_hist[None]).sum(2).mean(1)
    cls = np.zeros(n, np.float32)
    if t_class >= 0 and c_class is not None:
        cls = ((c_class >= 0) & (c_class != t_class)).astype(np.float32)
    score = dist0 + weights.hist * dist1 + weights.class_prior * cls
    if weights.global_ and c_global is not None:
        score = score + weights.global_ * (1.0 - np.asarray(c_global, np.float32))
    return {"score": score.astype(np.float32), "dist0": dist0.astype(np.float32),
            "dist1": dist1.astype(np.float32), "class": cls}
