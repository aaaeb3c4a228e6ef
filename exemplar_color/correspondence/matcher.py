"""Coarse-to-fine bidirectional deep patch matching: the similarity sub-net of Deep Exemplar-based Colorization.

Both images are seen as luminance (L repeated to three channels) by VGG-19; features are L2-normalised
per pixel; matching runs from the deepest level to the finest, each level starting from its parent's
field. Two matchers share that frame: ``"fast"`` (exact search where the similarity volume is small, a
local search around the inherited field elsewhere) and ``"patchmatch"`` (the published schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F

from ..backbone.features import Precision, VGG19Features
from ..backbone.spec import LEVEL_STRIDE, LEVELS
from ..color import l_to_gray
from ..constants import POSITION_PRIOR, PRECISIONS  # defined once, where the CLI reads them without torch
from ..errors import ExemplarColorError
from ..runtime import native_bfloat16
from . import fields as fl
from .search import (VOLUME_BUDGET, coherence_fill, exact_search, local_search, patchmatch, prefer_coherent,
                     volume_size)

Method = Literal["fast", "patchmatch"]
MatcherPrecision = Literal["auto", "float32", "mixed"]  # one of PRECISIONS



@dataclass(frozen=True)
class LevelSchedule:
    """Published PatchMatch parameters of one level (radius ``None``: the whole map)."""

    patch: int
    radius: int | None
    iterations: int = 10


SCHEDULE = {
    "relu5_1": LevelSchedule(3, None),
    "relu4_1": LevelSchedule(3, 6),
    "relu3_1": LevelSchedule(3, 6),
    "relu2_1": LevelSchedule(5, 4),
    "relu1_1": LevelSchedule(5, 4),
}

# The fast matcher searches the whole map exactly at the coarsest level and locally elsewhere, with the
# published radii except at four levels: once the coherence fill has cleaned the inherited field, radius 2
# finds 99% of what radius 4 finds at relu2_1/relu1_1 (known-transform test) at a third of the cost; at relu3_1
# radius 4 instead of 6 halves that level's time (0.25 -> 0.11 s on a 256 pair) for 0.07 points on the
# known-transform tuning photos (99.21% -> 99.14%; PF-WILLOW tuning pairs 0.649 -> 0.657); at relu4_1, radius 6
# let the less semantic level move relu5_1's matches to lookalike parts: PF-WILLOW tuning pairs PCK@0.1 fell
# from 0.65 at relu5_1 to 0.61 after relu4_1, and radius 2 there gives 0.657 -> 0.683 and 0.658 -> 0.702 (two
# disjoint sets of 90) for 0.03-0.2 points on the known-transform tuning photos, which coherence_margin repays.
FAST_RADIUS = {"relu4_1": 2, "relu3_1": 4, "relu2_1": 2, "relu1_1": 2}

# relu5_1 is matched without the context border (see Matcher), so its matches next to a photo's edges are the least
# reliable: within this many cells of each map's edges relu4_1 keeps the published radius. Known-transform tuning
# photos 99.66% -> 99.71% and 99.57% -> 99.64%; PF-WILLOW tuning pairs 0.683 -> 0.684, 0.689 -> 0.692.
EDGE_CELLS = {"relu4_1": 2}

COARSE_STRIDE = 4  # relu3_1 and deeper: the levels that take coarse_fill_window

WINDOWED_VOLUME_BUDGET = 2 ** 22  # below this, a windowed search is faster as one masked volume

CONFIDENCE_SIGMA = 4.0  # working pixels: a round trip landing this far from its start keeps exp(-1/2) of the trust

CYCLE_SIGMA = 1.0  # level pixels: how far a round trip may land from its start and still count as agreeing

CONTEXT_BORDER = 16  # working pixels of replicated edge the backbone sees around each image (see Matcher)
CONTEXT_UNTIL = "relu4_1"  # the context is dropped after this level (see Matcher)


COHERENCE_MARGIN = 0.02  # mean patch cosine a match may give up to move with its neighbourhood (see Matcher)


class CorrespondenceError(ExemplarColorError, ValueError):
    """The images cannot be matched as given (e.g. too small for the coarsest level)."""


@dataclass
class Correspondence:
    """Everything the similarity sub-net produces for a batch of target/reference pairs.

    Coordinates are working-resolution pixels, ``(x, y)`` with pixel centres at integers.

    Attributes:
        forward: ``(B, 2, H, W)`` for each target pixel, its match in the reference (Φ_T→R).
        backward: ``(B, 2, H2, W2)`` for each reference pixel, its match in the target (Φ_R→T).
        similarity: ``(B, 2 * len(levels), H, W)``: forward cosine maps, deepest level first, then the
            bidirectional maps in the same order (the colorization sub-net's input order).
        warped_ab: ``(B, 2, H, W)`` reference ab warped onto the target with 3x3 patch voting (R'_ab).
        confidence: ``(B, 1, H, W)`` in [0, 1]: how far to trust ``warped_ab``: cycle agreement, a Gaussian of
            the distance between a target pixel and where Φ_R→T∘Φ_T→R brings it back (cycle-consistent
            matches were right 98-99% of the time on the known-transform test).
        levels: the VGG-19 levels used, deepest first.
        target_features: the target's unit features at the matched levels of stride 4 and more (relu3_1 and
            deeper), as the matcher computed them: the hypercolumn sub-net reads them without another pass.
    """

    forward: torch.Tensor
    backward: torch.Tensor
    similarity: torch.Tensor
    warped_ab: torch.Tensor
    confidence: torch.Tensor
    levels: tuple[str, ...]
    fields: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    target_features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def forward_similarity(self) -> torch.Tensor:
        return self.similarity[:, : len(self.levels)]

    @property
    def bidirectional_similarity(self) -> torch.Tensor:
        return self.similarity[:, len(self.levels):]

    def cycle_warp(self, target_ab: torch.Tensor) -> torch.Tensor:
        """T'_ab: the target's own ab sent around Φ_R→T∘Φ_T→R (true colours where the cycle is consistent)."""
        back = fl.sample(self.backward, self.forward, mode="nearest")
        return fl.sample(target_ab, back, mode="nearest")

    def cycle_error(self) -> torch.Tensor:
        """``(B, 1, H, W)`` distance in pixels between each target pixel and where its round trip lands."""
        b, _, h, w = self.forward.shape
        back = fl.sample(self.backward, self.forward, mode="nearest")
        ident = fl.identity_field(b, h, w, h, w, back.device).float()
        return (back - ident).norm(dim=1, keepdim=True)

    def _map(self, fn: Any) -> "Correspondence":
        """Every tensor (the per-level fields too) passed through ``fn``."""
        moved = {k: fn(v) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        fields = {k: (fn(a), fn(b)) for k, (a, b) in self.fields.items()}
        feats = {k: fn(v) for k, v in self.target_features.items()}
        return Correspondence(**moved, levels=self.levels, fields=fields, target_features=feats)

    def to(self, device: torch.device | str) -> "Correspondence":
        return self._map(lambda v: v.to(device))

    def select(self, j: int) -> "Correspondence":
        """The ``j``-th pair of the batch, as a batch of one."""
        return self._map(lambda v: v[j:j + 1])


def _normalise(feat: torch.Tensor) -> torch.Tensor:
    return F.normalize(feat.float(), dim=1, eps=1e-6)


def _similarity(ft: torch.Tensor, fr: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward cosine ``cos(F_T(p), F_R(phi p))`` and the bidirectional score: the published
    ``cos(F_T(psi(phi p)), F_R(phi p))`` damped by how far the round trip lands from ``p`` (Gaussian,
    ``CYCLE_SIGMA``), so it is high only where both directions agree."""
    b, _, h, w = ft.shape
    hr, wr = fr.shape[-2:]
    src, dst = fl.rows(ft), fl.rows(fr)
    fwd = fl.gather_cosine(src, dst, phi, hr, wr)
    back = fl.compose(phi, psi)
    round_trip = fl.gather_cosine(src.index_select(0, fl.flat_index(back, h, w)), dst, phi, hr, wr)
    ident = fl.identity_field(b, h, w, h, w, phi.device)
    dist2 = (back - ident).float().pow(2).sum(1)
    bi = round_trip * torch.exp(-dist2 / (2 * CYCLE_SIGMA ** 2))
    return fwd, bi


class Matcher:
    """Bidirectional coarse-to-fine deep patch matching between a gray target and a colour reference.

    Args:
        backbone: a :class:`VGG19Features` that provides (at least) ``levels``.
        levels: VGG-19 levels to match, any order (run deepest to finest); default: the backbone's.
        method: ``"fast"`` (default) or ``"patchmatch"`` (the published schedule, for reference).
        seed: seeds PatchMatch's random search; the fast matcher is deterministic anyway.
        volume_budget: largest similarity volume (elements per image) searched exactly by ``"fast"``.
        fill_window: ``"fast"`` only: after each level, cycle-inconsistent matches take the mean displacement
            of the consistent ones within this fraction of the map size (0 disables). On the known-transform
            test it lifts pixels within 3 px from 85% to 98%.
        coarse_fill_window: the same at relu3_1 and deeper (stride >= 4), where matching decides which part of
            the reference a region corresponds to: borrowing the motion of a wider neighbourhood there helps
            both semantic and geometric matches (tuning pairs: PF-WILLOW PCK@0.1 0.584 -> 0.633,
            known-transform 97.2% -> 97.5%), while the fine levels keep a narrow window to place matches to the
            pixel (0.25 everywhere: known-transform 97.0%).
        precision: the backbone's arithmetic: ``"mixed"`` (float32 up to relu2_1, bfloat16 beyond; on a
            2-core AVX512_BF16 CPU the similarity sub-net takes 1.8x instead of 2.8x the float32 VGG-19
            pass, with the same accuracy within 0.1 point on the known-transform photos), ``"float32"``, or
            ``"auto"`` (default): mixed where the device computes bfloat16 natively
            (:func:`~exemplar_color.runtime.native_bfloat16`), float32 elsewhere.
        context_border: pixels of replicated edge added around both images before the backbone, a multiple of
            the deepest level's stride. VGG-19 pads every convolution with zeros, so without it a pixel near the
            edge of a photo has features unlike those of the same content inside the other photo, and a band
            along the edges (up to 20 px wide) matched wrongly. The context is cropped after relu4_1
            (``CONTEXT_UNTIL``): relu5_1 keeps the image's own edges, whose position cues help semantic matches
            (PF-WILLOW tuning pairs, context through relu5_1: PCK@0.1 0.633 -> 0.609). Known-transform tuning
            photos: pixels within 3 px 97.5% -> 99.2%, worst photo 92.1% -> 97.4%; 15-25% more backbone work on a
            256 px pair. 0 disables.
        position_prior: at the coarsest level (searched over the whole map), each candidate's mean patch cosine
            is lowered by this much times the squared distance, in fractions of the sides, between where the
            two patches sit in their images: of two equally similar parts, the one in the same place wins
            (moving across half the photo costs 0.06 of cosine). Tuning pairs of PF-WILLOW: PCK@0.1 0.621 ->
            0.649 and 0.592 -> 0.642 (two disjoint sets of 90; 1.0: 0.647, 0.5: 0.657); no change on the
            known-transform photos. 0 disables.
        coherence_margin: after each level, a match is replaced by the mean motion of the cycle-consistent
            matches around it (the fill window) when that scores within this much mean patch cosine of it (half
            as much at relu2_1 and finer). In a repeated texture the patch one period away scores as well as the
            right one, and when both directions pick it the cycle check cannot tell; the motion of the
            surrounding photo can. Known-transform photos (tuning 32, and 60 more drawn for this): pixels
            within 3 px 99.14% -> 99.66% and 98.82% -> 99.57% (with relu4_1's radius 2); PF-WILLOW tuning pairs
            PCK@0.1 0.683 -> 0.683 and 0.702 -> 0.689 (with relu4_1's former radius 6, coarse levels only: +0.4 and
            +1.6 points). 0 disables.

    Example:
        >>> m = Matcher(VGG19Features(["relu3_1", "relu2_1", "relu1_1"], weights="random"))
        >>> c = m.match(torch.rand(1, 1, 64, 64) * 100, torch.rand(1, 3, 64, 64) * 50)
        >>> c.similarity.shape
        torch.Size([1, 6, 64, 64])
    """

    def __init__(self, backbone: VGG19Features, levels: Sequence[str] | None = None, method: Method = "fast",
                 seed: int = 0, volume_budget: int = VOLUME_BUDGET, fill_window: float = 0.125,
                 coarse_fill_window: float = 0.25, precision: MatcherPrecision = "auto",
                 context_border: int = CONTEXT_BORDER, position_prior: float = POSITION_PRIOR,
                 coherence_margin: float = COHERENCE_MARGIN):
        levels = tuple(levels or backbone.levels)
        missing = [lv for lv in levels if lv not in backbone.levels]
        unknown = [lv for lv in levels if lv not in SCHEDULE]
        if unknown:
            raise ValueError(f"levels {unknown} cannot be matched; choose from {', '.join(SCHEDULE)}")
        if missing:
            raise ValueError(f"levels {missing} are not computed by the backbone (it has {list(backbone.levels)})")
        if method not in ("fast", "patchmatch"):
            raise ValueError(f"unknown method {method!r}; use 'fast' or 'patchmatch'")
        deepest = LEVEL_STRIDE[max(levels, key=LEVELS.index)]
        if context_border < 0 or context_border % deepest:
            raise ValueError(f"context_border must be a multiple of {deepest} (the stride of the deepest level), "
                             f"got {context_border}")
        if not 0 <= position_prior < float("inf"):
            raise ValueError(f"position_prior must be a finite number >= 0, got {position_prior}")
        if not 0 <= coherence_margin < float("inf"):
            raise ValueError(f"coherence_margin must be a finite number >= 0, got {coherence_margin}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.backbone = backbone
        self.levels = tuple(sorted(levels, key=LEVELS.index, reverse=True))
        self.method = method
        self.seed = seed
        self.volume_budget = volume_budget
        self.fill_window = fill_window
        self.coarse_fill_window = coarse_fill_window
        self.requested_precision = precision
        self.context_border = context_border
        self.position_prior = position_prior
        self.coherence_margin = coherence_margin

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def settings(self) -> dict[str, Any]:
        """Everything besides the images, levels and backbone that decides the fields: long jobs record it, so
        that work of another matcher is never mixed into theirs."""
        return {"method": self.method, "precision": self.precision, "context_border": self.context_border,
                "position_prior": self.position_prior, "coherence_margin": self.coherence_margin}

    @property
    def precision(self) -> Precision:
        """The precision in use on the backbone's current device (``auto`` resolved)."""
        if self.requested_precision == "auto":
            return "mixed" if native_bfloat16(self.device) else "float32"
        return self.requested_precision

    def features(self, lightness: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unit-normalised features of a luminance batch ``(B, 1, H, W)`` (L in 0..100)."""
        pad = self.context_border
        with torch.inference_mode():
            gray = F.pad(l_to_gray(lightness.to(self.device)), (pad,) * 4, mode="replicate")
            feats = self.backbone(gray, precision=self.precision, border=pad, border_until=CONTEXT_UNTIL)
        return {lv: _normalise(feats[lv]) for lv in self.levels}

    def check_size(self, *shapes: tuple[int, int]) -> None:
        stride = LEVEL_STRIDE[self.levels[0]]
        for h, w in shapes:
            if min(h, w) < 2 * stride:
                raise CorrespondenceError(
                    f"a {w}x{h} image is too small for level {self.levels[0]} (stride {stride}): "
                    f"the short side must be at least {2 * stride} px; use finer levels or a larger working size")

    def _match_level(self, lv: str, ft: torch.Tensor, fr: torch.Tensor,
                     init: tuple[torch.Tensor, torch.Tensor] | None, gen: torch.Generator,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        sched = SCHEDULE[lv]
        b, _, ht, wt = ft.shape
        hr, wr = fr.shape[-2:]
        radius = sched.radius if init is not None else None  # the coarsest level searches the whole map
        if init is None:
            init = (fl.identity_field(b, ht, wt, hr, wr, ft.device), fl.identity_field(b, hr, wr, ht, wt, ft.device))
        if self.method == "patchmatch":
            r_fwd = radius if radius is not None else max(hr, wr)
            r_bwd = radius if radius is not None else max(ht, wt)
            return (patchmatch(ft, fr, init[0], sched.patch, r_fwd, sched.iterations, gen),
                    patchmatch(fr, ft, init[1], sched.patch, r_bwd, sched.iterations, gen))
        volume = volume_size(ft, fr, sched.patch)
        if radius is None and volume <= self.volume_budget:
            phi, psi = exact_search(ft, fr, sched.patch, position_prior=self.position_prior)
        elif radius is not None and volume <= WINDOWED_VOLUME_BUDGET:  # cheaper than many tiny local passes
            phi, psi = exact_search(ft, fr, sched.patch, init, _fast_radii(lv, radius, ft, fr))
        else:  # a whole-map search too big for one volume falls back to a wide local search
            fwd_r, bwd_r = _fast_radii(lv, radius, ft, fr) if radius is not None else (8, 8)
            phi, psi = (local_search(ft, fr, init[0], sched.patch, fwd_r),
                        local_search(fr, ft, init[1], sched.patch, bwd_r))
        coarse = LEVEL_STRIDE[lv] >= COARSE_STRIDE
        fraction = self.coarse_fill_window if coarse else self.fill_window
        if self.fill_window and fraction:
            window = max(3, round(fraction * max(ht, wt)))
            phi, psi = coherence_fill(phi, psi, window), coherence_fill(psi, phi, window)
            margin = self.coherence_margin if coarse else self.coherence_margin / 2
            if margin:
                phi, psi = (prefer_coherent(ft, fr, phi, psi, sched.patch, window, margin),
                            prefer_coherent(fr, ft, psi, phi, sched.patch, window, margin))
        return phi, psi

    def match(self, target_l: torch.Tensor, reference_lab: torch.Tensor) -> Correspondence:
        """Match a batch of targets ``(B, 1, H, W)`` (L) with references ``(B, 3, H2, W2)`` (Lab)."""
        if target_l.dim() != 4 or target_l.shape[1] != 1:
            raise ValueError(f"target_l must be (B, 1, H, W), got {tuple(target_l.shape)}")
        if reference_lab.dim() != 4 or reference_lab.shape[1] != 3 or reference_lab.shape[0] != target_l.shape[0]:
            raise ValueError(f"reference_lab must be (B, 3, H2, W2) with B={target_l.shape[0]}, "
                             f"got {tuple(reference_lab.shape)}")
        self.check_size(target_l.shape[-2:], reference_lab.shape[-2:])
        target_l = target_l.to(self.device).float()
        reference_lab = reference_lab.to(self.device).float()
        h, w = target_l.shape[-2:]
        h2, w2 = reference_lab.shape[-2:]
        if (h, w) == (h2, w2):
            both = self.features(torch.cat([target_l, reference_lab[:, :1]]))
            ft_all = {lv: f[: len(target_l)] for lv, f in both.items()}
            fr_all = {lv: f[len(target_l):] for lv, f in both.items()}
        else:
            ft_all, fr_all = self.features(target_l), self.features(reference_lab[:, :1])
        return self.match_features(ft_all, fr_all, reference_lab, (h, w))

    def match_features(self, ft_all: dict[str, torch.Tensor], fr_all: dict[str, torch.Tensor],
                       reference_lab: torch.Tensor, size: tuple[int, int]) -> Correspondence:
        """Match precomputed unit features (for callers that already ran the backbone)."""
        h, w = size
        h2, w2 = reference_lab.shape[-2:]
        gen = torch.Generator().manual_seed(self.seed)
        fields: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        fwd_maps, bi_maps = [], []
        init = None
        for lv in self.levels:
            ft, fr = ft_all[lv], fr_all[lv]
            if init is not None:
                init = (fl.upsample_field(init[0], *ft.shape[-2:], *fr.shape[-2:]),
                        fl.upsample_field(init[1], *fr.shape[-2:], *ft.shape[-2:]))
            phi, psi = self._match_level(lv, ft, fr, init, gen)
            fields[lv] = (phi, psi)
            fwd, bi = _similarity(ft, fr, phi, psi)
            fwd_maps.append(fwd)
            bi_maps.append(bi)
            init = (phi, psi)
        similarity = _upsample_maps(fwd_maps + bi_maps, h, w)
        finest = self.levels[-1]
        stride = LEVEL_STRIDE[finest]
        phi, psi = fields[finest]
        forward = fl.to_pixels(phi, stride, h, w)
        backward = fl.to_pixels(psi, stride, h2, w2)
        warped_ab = fl.vote(reference_lab[:, 1:], forward)
        kept = {lv: ft_all[lv] for lv in self.levels if LEVEL_STRIDE[lv] >= COARSE_STRIDE}
        corr = Correspondence(forward, backward, similarity, warped_ab, forward[:, :1], self.levels, fields, kept)
        corr.confidence = torch.exp(-0.5 * (corr.cycle_error() / CONFIDENCE_SIGMA) ** 2)
        return corr


def _fast_radii(lv: str, published: int, ft: torch.Tensor, fr: torch.Tensor,
                ) -> tuple[int | torch.Tensor, int | torch.Tensor]:
    """The fast matcher's search radius at ``lv`` for each direction: ``FAST_RADIUS``, or per source pixel where
    ``EDGE_CELLS`` keeps the published radius along the edges."""
    fast = FAST_RADIUS.get(lv, published)
    cells = EDGE_CELLS.get(lv, 0)
    if not cells or fast >= published:
        return fast, fast

    def per_pixel(feat: torch.Tensor) -> torch.Tensor:
        h, w = feat.shape[-2:]
        ys = torch.arange(h, device=feat.device).view(h, 1)
        xs = torch.arange(w, device=feat.device).view(1, w)
        to_edge = torch.minimum(torch.minimum(ys, h - 1 - ys), torch.minimum(xs, w - 1 - xs))
        return torch.where(to_edge < cells, published, fast)
    return per_pixel(ft), per_pixel(fr)


def _upsample_maps(maps: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
    """Per-level maps of different sizes -> one ``(B, N, h, w)`` stack at working resolution."""
    return torch.cat([F.interpolate(m.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
                      for m in maps], 1)
