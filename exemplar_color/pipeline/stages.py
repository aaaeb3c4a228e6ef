"""The pipeline's stages, each a public, typed function; :class:`~exemplar_color.pipeline.Colorizer` composes
them in :meth:`~exemplar_color.pipeline.Colorizer.colorize_batch` (the sequence, written once), and any other
mode may compose them too (several references, video, the app, the benchmarks):

    read_references / read_target -> working_l, working_lab -> match -> run_head -> render -> assemble (+ timings)

Every stage takes what it needs as arguments (the matcher, a head, the working size, the upsampling), so a
caller holds no private state of the Colorizer's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..colorization.heads import Head, HypercolumnHead
from ..correspondence import Correspondence, Matcher
from ..correspondence import fields as fl
from ..errors import ExemplarColorError
from ..full_resolution import FullResolution
from ..io import ImageInput
from ..layout import to_array
from ..photos import Photo, read_photo, read_reference
from ..recommendations import AUTO_CANDIDATES, usable_references
from ..result import ColorizationResult, Lazy

__all__ = ["Prepared", "Matched", "MatchView", "read_target", "read_references", "working_l", "working_lab", "match",
           "full_fields", "views_of", "alone_view", "run_head", "render", "stage_timings", "assemble", "synchronizer"]


@dataclass
class Prepared:
    """One pair read and brought to the working size, waiting for its batch."""

    index: int  # its place among the pairs asked for
    target: Photo
    reference: Photo | None  # None: coloured with no reference
    tl: torch.Tensor  # (1, 1, h, w) target L at the working size
    rlab: torch.Tensor | None  # (1, 3, h', w') reference Lab at the working size
    recommendations: list[Any] = field(default_factory=list)  # automatic mode: the gallery's ranking
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # automatic mode: (path, why) before it
    load_s: float = 0.0


@dataclass
class MatchView:
    """What one target's result reports of its match: confidence, warped colours and similarity at the working
    size, the reference(s), and the full-size fields (computed only when read)."""

    confidence: torch.Tensor | np.ndarray  # (1, 1, h, w) tensor, or (h, w) array
    warped_ab: torch.Tensor | np.ndarray
    similarity: np.ndarray
    reference: str
    forward: Lazy
    backward: Lazy
    labels: np.ndarray | None = None
    references: tuple[str, ...] = ()


@dataclass
class Matched:
    """What the match stage hands on: the correspondence the heads read (batched; ``None``: no reference),
    one :class:`MatchView` per target, the seconds it took, and, where the heads read the match otherwise
    than :func:`run_head` does (several references blended after the heads), how to run a head on it."""

    corr: Correspondence | None
    views: list[MatchView]
    seconds: float
    head_step: Callable[[Head, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None = None


def read_target(target: ImageInput | Photo, size: int, device: torch.device | str, stacklevel: int = 3) -> Photo:
    """Pipeline stage: the photo to colour, at working size ``size`` (a colour one is warned about: only its
    luminance is used)."""
    t = read_photo(target, size, device)
    if t.colour:
        warnings.warn(f"{t.name}: the target is a colour photo; only its luminance is used", stacklevel=stacklevel + 1)
    return t


def read_references(target: ImageInput | Photo, references: Sequence[ImageInput | Photo] | None,
                    recommend: Callable[[ImageInput, int], list[Any]], n: int, size: int,
                    device: torch.device | str) -> tuple[Photo, list[Photo], list[Any], list[tuple[str, str]]]:
    """Pipeline stage, where references come from: the target read (a colour one warned about once) and its
    references -- those given (``()``: none, the photo alone), read with the one gray-reference rule, or with
    ``None`` (automatic mode) the
    ``n`` best usable ones of the gallery's ranking (``recommend(target, k)``, k at least
    :data:`AUTO_CANDIDATES`; :func:`usable_references`) -- all at working size ``size`` on ``device``, with
    that ranking and ``(path, why)`` of those passed over."""
    t = read_target(target, size, device, stacklevel=4)
    if references is not None:
        return t, [read_reference(r, size, device) for r in references], [], []
    recs = recommend(target, max(AUTO_CANDIDATES, 2 * n))
    photos, passed = usable_references(target, t, recs, n, size, device)
    return t, photos, recs, passed


def working_l(target: Photo, size: int, device: torch.device | str) -> torch.Tensor:
    """Pipeline stage: the target's L ``(1, 1, h, w)`` at the working size (short side ``size``)."""
    return read_photo(target, size, device).lab[:, :1]


def working_lab(reference: Photo, size: int, device: torch.device | str) -> torch.Tensor:
    """Pipeline stage: the reference's Lab ``(1, 3, h, w)`` at the working size (a gray one: matched on L)."""
    return read_photo(reference, size, device).lab


def match(matcher: Matcher, tl: torch.Tensor, rlab: torch.Tensor, *,
          reference_features: dict[str, torch.Tensor] | None = None,
          target_features: dict[str, torch.Tensor] | None = None) -> Correspondence:
    """Pipeline stage: the correspondence of targets ``tl`` with references ``rlab`` (batched alike). A caller
    that matches one photo many times keeps its features (``matcher.features(tl)``, or
    ``matcher.features(rlab[:, :1])`` for a reference) and passes them, so its backbone pass runs once."""
    if reference_features is None and target_features is None:
        return matcher.match(tl, rlab)
    matcher.check_size(tl.shape[-2:], rlab.shape[-2:])
    ft = target_features if target_features is not None else matcher.features(tl)
    fr = reference_features if reference_features is not None else matcher.features(rlab[:, :1])
    return matcher.match_features(ft, fr, rlab, tuple(tl.shape[-2:]))


def full_fields(corr: Correspondence, t_size: tuple[int, int], r_size: tuple[int, int],
                ) -> dict[str, Callable[[], np.ndarray]]:
    """How to compute ``forward`` and ``backward`` at their images' original sizes, in the other image's
    original pixels: 8 bytes per pixel each, so a :class:`ColorizationResult` computes them only if read
    (from the working-size fields and the two sizes alone)."""
    def full(field: torch.Tensor, size: tuple[int, int], other: torch.Tensor, other_size: tuple[int, int]):
        (h, w), (ho, wo) = size, other_size
        return to_array(fl.resize_field(field, h, w, wo / other.shape[-1], ho / other.shape[-2]))

    fwd, bwd = corr.forward, corr.backward
    return {"forward": partial(full, fwd, t_size, bwd, r_size), "backward": partial(full, bwd, r_size, fwd, t_size)}


def views_of(corr: Correspondence, items: list[Prepared]) -> list[MatchView]:
    """Each target's :class:`MatchView` of a batched one-reference correspondence."""
    out = []
    for j, item in enumerate(items):
        one = corr.select(j)
        fields = full_fields(one, item.target.size, item.reference.size)  # type: ignore[union-attr]
        name = item.reference.name  # type: ignore[union-attr]
        out.append(MatchView(one.confidence, one.warped_ab, one.similarity[0].cpu().numpy(), name,
                             fields["forward"], fields["backward"], np.zeros(one.confidence.shape[-2:], np.uint8),
                             (name,)))
    return out


def alone_view(tl: torch.Tensor, levels: tuple[str, ...]) -> MatchView:
    """The :class:`MatchView` of a photo coloured with no reference: nothing matched, no fields."""
    h, w = tl.shape[-2:]
    return MatchView(np.zeros((h, w), np.float32), np.zeros((h, w, 2), np.float32),
                     np.zeros((2 * len(levels), h, w), np.float32), "", _no_correspondence, _no_correspondence)


def run_head(head: Head, tl: torch.Tensor, corr: Correspondence | None,
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pipeline stage: ab ``(B, 2, h, w)`` at the working size, and the hypercolumn sub-net's trust ``(B, 1, h, w)``
    (where the colours came from the reference; ``None`` for other heads). ``corr=None``: the photo alone."""
    if corr is None:
        return head.without_reference(tl), None  # type: ignore[attr-defined]
    if isinstance(head, HypercolumnHead):  # its gate says where colours came from
        return head.colorize(tl, corr)
    return head(tl, corr), None


def render(pixels: torch.Tensor, tl: torch.Tensor, ab: torch.Tensor, upsample: str) -> FullResolution:
    """Pipeline stage: the full-resolution result for the photo ``pixels``, in row bands (bounded memory)."""
    return FullResolution(pixels, tl, ab, upsample)


def stage_timings(load_s: float, match_s: float, head_s: float, full_resolution_s: float) -> dict[str, float]:
    """The seconds of each stage and their total, as every result reports them."""
    timings = {"load_s": load_s, "match_s": match_s, "head_s": head_s, "full_resolution_s": full_resolution_s}
    timings["total_s"] = sum(timings.values())
    return timings


def assemble(full: FullResolution, image: Image.Image, view: MatchView, trust: torch.Tensor | None, tl: torch.Tensor,
             head: str, levels: tuple[str, ...], timings: dict[str, float], item: Prepared | None = None,
             ) -> ColorizationResult:
    """Pipeline stage: the :class:`ColorizationResult` of one target and one head (``trust``, where the head
    gives one, stands for the match's confidence)."""
    return ColorizationResult(
        image=image, _ab=full.ab_array, confidence=_array(trust if trust is not None else view.confidence),
        warped_ab=_array(view.warped_ab), similarity=view.similarity, reference=view.reference, head=head,
        levels=levels, timings=timings, recommendations=item.recommendations if item else [],
        passed_over=item.passed_over if item else [], labels=view.labels, references=view.references,
        working_l=tl.cpu(), _forward=view.forward, _backward=view.backward)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work before a stage is timed (nothing on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else to_array(x)


def _no_correspondence() -> np.ndarray:
    raise ExemplarColorError("this photo was coloured with no reference: it has no correspondence")
