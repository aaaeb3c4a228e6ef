""":class:`Colorizer`: builds its networks once and composes the pipeline's stages (:mod:`.stages`) for every
photo; the sequence match -> head -> render -> result + timings is :meth:`Colorizer.colorize_batch`, written
once for one reference, several (:mod:`.multireference`) and none."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..backbone.choice import resolve_backbone
from ..backbone.features import VGG19Features
from ..colorization.analogy import AnalogyHead
from ..colorization.heads import Head, HypercolumnHead, NetworkHead, network_head
from ..constants import POSITION_PRIOR, WORKING_SIZE
from ..correspondence import Correspondence, Matcher
from ..correspondence.matcher import MatcherPrecision
from ..errors import ConfigMismatchError, ExemplarColorError, UsageError
from ..runtime import resolve_device
from ..full_resolution import UPSAMPLE_METHODS, FullResolution
from ..io import ImageInput
from ..models import resolve_model
from ..photos import Photo, read_photo
from ..result import ColorizationResult
from . import stages
from .multireference import FUSE_MODES, match_references
from .stages import Matched, Prepared

__all__ = ["Colorizer"]


class Colorizer:
    """Exemplar-based colorization; builds its networks once and reuses them for every photo.

    Args:
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
        vgg_weights: VGG-19 weight file; ``None`` uses ``$EXEMPLAR_COLOR_VGG_WEIGHTS``, the cache, or downloads.
        vgg_variant: ``"caffe"`` (the original VGG-19 the paper used) or ``"torchvision"`` preprocessing (must
            match the weights); ``None``: the model's, else ``"caffe"``.
        levels: VGG-19 levels to match (default: the model's, else relu5_1 ... relu1_1).
        model: ``"default"``: the colorization sub-net shipped with the package (trained; see
            ``exemplar_color/models/MODEL_CARD.md``); a path: your own checkpoint (``.safetensors``);
            ``"analogy"`` (or ``None``/``"none"``): the analogy head, no network. A model brings its levels
            and backbone variant; contradicting them explicitly raises :class:`ConfigMismatchError`.
        size: working size (short side, pixels).
        index: a gallery index (path or :class:`~exemplar_color.retrieval.GalleryIndex`) for automatic references.
        chroma_gain: how far the trained sub-net's colours are pushed out from gray (1: as predicted). A network
            trained to minimise colour error under uncertainty predicts cautious, muted colours; ``None`` takes
            the gain calibrated with the model (in its card; 1 for checkpoints without one). Certain matches
            keep the reference's own colours whatever the gain.
        vivid: read the sub-net's colour distribution out more boldly (its second calibrated readout: more
            colourful where the reference gives nothing, at some cost in colour error; see the model card).
            Needs a model that has one (the shipped one does).
        method: correspondence search, ``"fast"`` or ``"patchmatch"`` (the published schedule; slow).
        precision: the backbone's arithmetic while matching: ``"auto"`` (bfloat16 beyond relu2_1 where the
            device computes it natively), ``"mixed"`` or ``"float32"`` (see :class:`Matcher`).
        position_prior: how much the coarsest level holds a match to the same place in both photos (0: the
            subject may be anywhere in the reference; see :class:`Matcher`).
        upsample: how predicted ab reach full size: ``"joint-bilateral"`` (default: bilinear taps weighted
            by how close their L is to the full-resolution L, so colours stop at the photo's edges),
            ``"bilinear"`` or ``"guided"`` (fast guided filter). Kodak known-transform pairs (4 photos, full
            size): 36.66 / 36.55 / 34.39 dB: the guided fit puts the L texture into the colours.
    """

    def __init__(self, device: str | torch.device = "auto", vgg_weights: str | os.PathLike | None = None,
                 vgg_variant: str | None = None, levels: Sequence[str] | None = None,
                 model: str | os.PathLike | None = "default", size: int = WORKING_SIZE, index: Any = None,
                 method: str = "fast", upsample: str = "joint-bilateral", chroma_gain: float | None = None,
                 precision: MatcherPrecision = "auto", position_prior: float = POSITION_PRIOR, vivid: bool = False):
        self.device = resolve_device(device)
        self.size = size
        if chroma_gain is not None and not 0 < chroma_gain <= 3:
            raise ValueError(f"chroma_gain must be in (0, 3], got {chroma_gain}")
        self.heads: dict[str, Head] = {}  # the chosen head first; colorize_heads runs them all
        path = resolve_model(model)
        net = None
        if vivid and path is None:
            raise UsageError("vivid colours need the trained sub-net (model='default' or a checkpoint), not the "
                             "analogy head")
        if path is not None:
            from ..colorization.checkpoint import load_checkpoint, release_gain

            net, meta, _ = load_checkpoint(path, map_location=self.device)
            if chroma_gain is None:  # the gain calibrated with the model
                chroma_gain = release_gain(path, meta)
        choice = resolve_backbone(vgg_weights, vgg_variant, levels, model=path,  # the backbone, decided once
                                  trained_on=None if net is None else net.config)
        self.levels, self.vgg_weights, self.vgg_variant = choice.levels, choice.weights, choice.variant
        self.backbone = VGG19Features(choice.levels, weights=choice.weights, variant=choice.variant).to(self.device)
        self.matcher = Matcher(self.backbone, self.levels, method=method,  # type: ignore[arg-type]
                               precision=precision, position_prior=position_prior)
        if net is not None:
            try:
                self.heads["network"] = network_head(net, chroma_gain, self.matcher.features, vivid=vivid)
            except ConfigMismatchError as e:
                raise ConfigMismatchError(f"{path}: {e}") from None
            if getattr(net, "has_vivid", False) and not vivid:  # the other readout, for comparisons (evaluate)
                self.heads["vivid"] = network_head(net, chroma_gain, self.matcher.features, vivid=True)
                self.heads["vivid"].name = "vivid"
        self.heads["analogy"] = AnalogyHead()
        self.head: Head = next(iter(self.heads.values()))
        self._index = index
        if upsample not in UPSAMPLE_METHODS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_METHODS)}, got {upsample!r}")
        self.upsample = upsample

    @property
    def head_name(self) -> str:
        return self.head.name

    @property
    def chroma_gain(self) -> float:
        """How far the network head pushes its colours out from gray (1.0 without a network)."""
        net = self.heads.get("network")
        return net.chroma_gain if isinstance(net, (NetworkHead, HypercolumnHead)) else 1.0

    @property
    def vivid(self) -> bool:
        """Whether the network head reads its colours out with the vivid readout."""
        return bool(getattr(self.heads.get("network"), "vivid", False))

    @property
    def colours_alone(self) -> bool:
        """Whether this Colorizer's head can colour a photo with no reference (the hypercolumn sub-net)."""
        return isinstance(self.head, HypercolumnHead)

    # ----------------------------------------------------------------- retrieval
    @property
    def index(self):
        if self._index is not None and not hasattr(self._index, "search"):
            from ..retrieval import GalleryIndex

            self._index = GalleryIndex.open(self._index, weights=self.vgg_weights, device=self.device)
        return self._index

    def recommend(self, target: ImageInput, k: int = 5) -> list[Any]:
        """The ``k`` best references for ``target`` from the gallery index (best first)."""
        if self.index is None:
            raise ExemplarColorError("no gallery index: create the Colorizer with index=PATH "
                                     "(build one with `exemplar-color index build`)")
        return self.index.search(target, k=k)

    # ----------------------------------------------------------------- the stages, with this Colorizer's settings
    def working_l(self, target: Photo) -> torch.Tensor:
        """:func:`.stages.working_l` at this Colorizer's working size and device."""
        return stages.working_l(target, self.size, self.device)

    def working(self, target: Photo, reference: Photo) -> tuple[torch.Tensor, torch.Tensor]:
        """Target L ``(1, 1, h, w)`` and reference Lab ``(1, 3, h', w')`` at the working size."""
        return self.working_l(target), stages.working_lab(reference, self.size, self.device)

    full_fields = staticmethod(stages.full_fields)

    def render(self, pixels: torch.Tensor, tl: torch.Tensor, ab: torch.Tensor) -> FullResolution:
        """:func:`.stages.render` with this Colorizer's upsampling."""
        return stages.render(pixels, tl, ab, self.upsample)

    def match(self, target: ImageInput, reference: ImageInput) -> tuple[Correspondence, dict[str, np.ndarray]]:
        """Correspondence at the working size, plus ``forward`` ``(H_t, W_t, 2)`` and ``backward``
        ``(H_r, W_r, 2)`` at the images' ORIGINAL sizes, in the other image's original pixel coordinates
        (``x, y``, 0-based, pixel centres at integers)."""
        t, r = read_photo(target, self.size, self.device), read_photo(reference, self.size, self.device)
        tl, rlab = self.working(t, r)
        corr = stages.match(self.matcher, tl, rlab)
        return corr, {d: f() for d, f in stages.full_fields(corr, t.size, r.size).items()}

    def read_inputs(self, i: int, target: ImageInput | Photo, references: Sequence[ImageInput | Photo] | None = None,
                    n: int = 1) -> tuple[Prepared, list[Photo]]:
        """Read one target and its references at the working size: those given (``()``: none, the photo alone,
        which only the hypercolumn sub-net colours), or with ``None`` the gallery's ``n`` best usable ones
        (without a gallery: none). With several references only the target is brought to the working size
        here (:func:`.multireference.match_references` matches each)."""
        t0 = time.perf_counter()
        if references is None and self._index is None:
            references = ()
        if references is not None and not references and not self.colours_alone:
            raise ExemplarColorError(f"the {self.head_name} head needs a reference: give one, or a gallery index "
                                     f"(index=PATH), or use a model that colours alone (the default one)")
        t, photos, recs, passed = stages.read_references(target, references, self.recommend, n, self.size,
                                                         self.device)
        reference, rlab = (photos[0], photos[0].lab if len(photos) == 1 else None) if photos else (None, None)
        return Prepared(i, t, reference, t.lab[:, :1], rlab, recs, passed, time.perf_counter() - t0), photos

    # ----------------------------------------------------------------- colorizing
    def colorize(self, target: ImageInput, reference: ImageInput | Sequence[ImageInput] | None = None, *,
                 top_k: int = 1) -> ColorizationResult:
        """Colorize ``target`` with ``reference`` (or, with an index and no reference, the best one found).

        ``reference`` may be a list: each pixel then takes its colours from the reference that matches it
        best (:mod:`exemplar_color.pipeline.multireference`; ``result.labels`` says which). In automatic mode,
        ``top_k`` > 1 uses the ``top_k`` best usable references of the gallery that way."""
        return self.colorize_heads(target, reference, top_k=top_k, heads=(self.head_name,))[self.head_name]

    def colorize_heads(self, target: ImageInput, reference: ImageInput | Sequence[ImageInput] | None = None, *,
                       top_k: int = 1, heads: Sequence[str] | None = None) -> dict[str, ColorizationResult]:
        """One correspondence, every head this Colorizer has (``network`` with a model, and ``analogy``):
        how evaluations compare the heads on exactly the same matches. ``reference``/``top_k``: as in
        :meth:`colorize`."""
        several = isinstance(reference, (list, tuple))
        references = list(reference) if several else None if reference is None else [reference]
        return self.colorize_references(target, references, heads or tuple(self.heads), top_k=top_k)

    def colorize_references(self, target: ImageInput | Photo, references: Sequence[ImageInput | Photo] | None,
                            heads: Sequence[str], fuse: str = "inputs", top_k: int = 1,
                            ) -> dict[str, ColorizationResult]:
        """``{head: ColorizationResult}`` for ``target`` coloured from ``references`` (images or Photos; ``None``:
        the gallery's ``top_k`` best usable ones, or without a gallery the photo alone). With several, each
        pixel takes its colours from the reference that matches it best (:mod:`.multireference`):
        ``fuse="inputs"`` (default) fuses the correspondences before the head; ``"outputs"`` runs the head on
        each reference and blends the predicted colours by the same weights."""
        if fuse not in FUSE_MODES:
            raise ValueError(f"fuse must be one of {FUSE_MODES}, got {fuse!r}")
        if references is not None and not references:
            raise ValueError("give at least one reference")
        item, photos = self.read_inputs(0, target, references, top_k)
        matched = match_references(self.matcher, item, photos, fuse, self.size, self.device) \
            if len(photos) > 1 else None
        return self.colorize_batch([item], heads, matched)[0]

    def colorize_alone(self, target: ImageInput, head: str | None = None) -> ColorizationResult:
        """Colorize ``target`` from the photo alone, even when this Colorizer has a gallery index (the
        hypercolumn sub-net's learnt prior; other heads raise :class:`ExemplarColorError`); ``head``: another
        of :attr:`heads` (``"vivid"``), for comparisons."""
        item = self.read_inputs(0, target, ())[0]
        name = head or self.head_name
        return self.colorize_batch([item], (name,))[0][name]

    def colorize_many(self, pairs: Iterable[tuple[ImageInput, ImageInput | None]], batch_size: int = 8,
                      ) -> list[ColorizationResult]:
        """Colorize many ``(target, reference)`` pairs; pairs whose working sizes agree share a device batch."""
        return [r[self.head_name] for r in self.colorize_pairs(pairs, batch_size, (self.head_name,))]

    def colorize_video(self, source: str | os.PathLike, reference: Any = None, output: str | os.PathLike | None = None,
                       **options: Any):
        """Colorize a video file or a folder of frames into ``output`` (a video file, or a folder of PNG
        frames), streaming, with temporal consistency; ``reference``: a colour photo, several (each shot takes
        the best-matching), or, with ``reference_frame=N``, frame N of a colour video. Options and result:
        :func:`exemplar_color.video.colorize_video`, which this only calls: video is built on the pipeline, so
        the pipeline imports it here, when called, and nowhere else."""
        from ..video import colorize_video

        return colorize_video(self, source, reference, output, **options)

    def colorize_pairs(self, pairs: Iterable[tuple[ImageInput, ImageInput | None]], batch_size: int,
                       heads: Sequence[str]) -> list[dict[str, ColorizationResult]]:
        """``{head: result}`` for every ``(target, reference)`` pair (reference None: the gallery's best, or the
        photo alone without a gallery); pairs whose working sizes agree share a device batch."""
        prepared = [self.read_inputs(i, target, None if reference is None else [reference])[0]
                    for i, (target, reference) in enumerate(pairs)]
        results: list[dict[str, ColorizationResult] | None] = [None] * len(prepared)
        groups: dict[tuple, list[Prepared]] = {}
        for item in prepared:  # pairs whose working sizes agree share a device batch
            groups.setdefault((tuple(item.tl.shape), None if item.rlab is None else tuple(item.rlab.shape)),
                              []).append(item)
        for items in groups.values():
            for s in range(0, len(items), batch_size):
                chunk = items[s:s + batch_size]
                for item, res in zip(chunk, self.colorize_batch(chunk, heads)):
                    results[item.index] = res
        return results  # type: ignore[return-value]

    def match_batch(self, items: Sequence[Prepared]) -> Matched:
        """The match stage of a batch whose working sizes agree (no match for photos with no reference)."""
        tl = torch.cat([it.tl for it in items])
        if items[0].reference is None:
            return Matched(None, [stages.alone_view(tl, self.levels)] * len(items), 0.0)
        t0 = time.perf_counter()
        corr = stages.match(self.matcher, tl, torch.cat([it.rlab for it in items]))  # type: ignore[misc]
        stages.synchronizer(self.device)()
        return Matched(corr, stages.views_of(corr, list(items)), time.perf_counter() - t0)

    def colorize_batch(self, items: Sequence[Prepared], heads: Sequence[str], matched: Matched | None = None,
                       ) -> list[dict[str, ColorizationResult]]:
        """The pipeline sequence, written once: match (:meth:`match_batch` unless ``matched`` is given) -> each
        head -> full resolution -> a result with its timings, per target of a batch whose working sizes agree.
        A photo with no reference is coloured by this Colorizer's own head alone."""
        sync = stages.synchronizer(self.device)
        tl = torch.cat([it.tl for it in items])
        matched = matched or self.match_batch(items)
        if matched.corr is None:  # only the hypercolumn heads colour a photo alone
            heads = tuple(h for h in heads if isinstance(self.heads[h], HypercolumnHead)) or (self.head_name,)
        step = matched.head_step or (lambda head, l: stages.run_head(head, l, matched.corr))
        n = len(items)
        ab: dict[str, torch.Tensor] = {}
        trust: dict[str, torch.Tensor | None] = {}
        head_s: dict[str, float] = {}
        for head in heads:
            h0 = time.perf_counter()
            ab[head], trust[head] = step(self.heads[head], tl)
            sync()
            head_s[head] = time.perf_counter() - h0
        out = []
        for j, item in enumerate(items):
            per_head = {}
            for head in heads:
                t3 = time.perf_counter()
                tl_j, gate = tl[j:j + 1], trust[head]
                full = stages.render(item.target.pixels, tl_j, ab[head][j:j + 1], self.upsample)
                image = full.image()
                sync()
                timings = stages.stage_timings(item.load_s, matched.seconds / n, head_s[head] / n,
                                               time.perf_counter() - t3)
                per_head[head] = stages.assemble(full, image, matched.views[j], None if gate is None else gate[j:j + 1],
                                                 tl_j, head, self.levels, timings, item)
            out.append(per_head)
        return out
