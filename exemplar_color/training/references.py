"""References for training pairs, mixed the way the published system's authors built theirs.

Their retrieval repository's notes: about 45% of the references come from the retrieval top-5, 45% are
random images of the target's ImageNet class and 10% random images of a related class. A network trained
only on well-matched references learns to copy; the random and related-class ones teach it what to do
where the reference has no match, which is the failure it exists to fix.

Here the retrieval top-5 comes from the project's own gallery index over the training photos (two-stage
ranking), with the target itself and its near-duplicates (global cosine above ``duplicate_cosine``)
excluded. "Related class" has no WordNet hierarchy to lean on, so it is read from the photos: the classes
whose mean global descriptor is nearest the target class's. Photos without a class (BSDS500) take every
reference from retrieval.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ReferenceMix", "choose_references"]


@dataclass(frozen=True)
class ReferenceMix:
    """Shares of the three kinds of reference (retrieval top-k, same class, related class)."""

    retrieved: float = 0.45
    same_class: float = 0.45
    related_class: float = 0.10
    top_k: int = 5
    related_classes: int = 3
    duplicate_cosine: float = 0.97

    def draw(self, rng: random.Random) -> str:
        x = rng.random() * (self.retrieved + self.same_class + self.related_class)
        if x < self.retrieved:
            return "retrieved"
        return "same_class" if x < self.retrieved + self.same_class else "related_class"


def _related(classes: Sequence[str | None], unit: np.ndarray, n: int) -> dict[str, list[str]]:
    """Each class's ``n`` nearest other classes by the cosine of their mean descriptors."""
    names = sorted({c for c in classes if c is not None})
    if len(names) < 2:
        return {c: [] for c in names}
    idx = {c: i for i, c in enumerate(names)}
    centroids = np.zeros((len(names), unit.shape[1]), np.float64)
    for c, u in zip(classes, unit):
        if c is not None:
            centroids[idx[c]] += u
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    sim = centroids @ centroids.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1)[:, :n]
    return {c: [names[j] for j in order[i]] for i, c in enumerate(names)}


def choose_references(classes: Sequence[str | None], global_unit: np.ndarray, retrieved: Sequence[Sequence[int]],
                      per_target: int = 2, mix: ReferenceMix = ReferenceMix(), seed: int = 0,
                      ) -> list[list[tuple[int, str]]]:
    """``per_target`` distinct references for every image, as ``(index, kind)``.

    Args:
        classes: each image's class (``None`` when unknown: retrieval only).
        global_unit: ``(N, D)`` unit global descriptors (near-duplicate test and related classes).
        retrieved: each image's ranked retrieval results (indices into the same list), best first.
        per_target: references per target (distinct; fewer when the pools run dry).
        mix: shares of the kinds; a kind whose pool is empty for a target falls back to retrieval.
        seed: the draw is a pure function of the inputs and the seed.
    """
    n = len(classes)
    if global_unit.shape[0] != n or len(retrieved) != n:
        raise ValueError("classes, descriptors and retrieval lists must describe the same images")
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(classes):
        if c is not None:
            by_class.setdefault(c, []).append(i)
    related = _related(classes, global_unit, mix.related_classes)
    out: list[list[tuple[int, str]]] = []
    for i in range(n):
        def usable(j: int) -> bool:
            return j != i and float(global_unit[i] @ global_unit[j]) < mix.duplicate_cosine

        top = [j for j in retrieved[i] if usable(j)][:mix.top_k]
        c = classes[i]
        pools = {"retrieved": top,
                 "same_class": [j for j in by_class.get(c, []) if usable(j)] if c is not None else [],
                 "related_class": [j for rc in related.get(c, []) for j in by_class[rc] if usable(j)]
                 if c is not None else []}
        chosen: list[tuple[int, str]] = []
        for _ in range(4 * per_target):
            if len(chosen) == per_target:
                break
            kind = mix.draw(rng)
            taken = {j for j, _ in chosen}
            pool = [j for j in pools[kind] if j not in taken]
            if not pool:
                kind, pool = "retrieved", [j for j in top if j not in taken]
            if pool:
                chosen.append((rng.choice(pool), kind))
        out.append(chosen)
    return out
