"""The public API: :class:`Colorizer` turns black-and-white photos into colour ones.

    >>> from exemplar_color import Colorizer                      # doctest: +SKIP
    >>> c = Colorizer()                                           # doctest: +SKIP
    >>> c.colorize("old.jpg", "colour.jpg").image.save("out.png")  # doctest: +SKIP

Flow: target L and reference Lab at the working size -> correspondence (similarity sub-net) -> a head
(trained colorization sub-net, or the analogy head without one) -> predicted ab brought to full size along
the full-resolution L (guided upsampling) -> recombined with the target's original L, unchanged.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .backbone import VGG19Features
from .color import gray_to_l, rgb_to_lab
from .colorization.analogy import AnalogyHead
from .colorization.heads import Head, HypercolumnHead, NetworkHead, network_head
from .correspondence import DEFAULT_LEVELS, Correspondence, Matcher
from .correspondence.matcher import POSITION_PRIOR, MatcherPrecision
from .correspondence import fields as fl
from .runtime import resolve_device
from .artifacts import refuse_differences
from .errors import ConfigMismatchError, ExemplarColorError
from .weights import choose_variant
from .full_resolution import UPSAMPLE_METHODS, FullResolution
from .io import ImageInput
from .models import resolve_model
from .photos import GrayReferenceError, Photo, read_photo, usable_references
from .result import ColorizationResult
from .layout import to_array
from .working import resize, working_size

DEFAULT_VARIANT = "caffe"  # the original Caffe VGG-19, as the paper used
AUTO_CANDIDATES = 10  # automatic mode looks this far down the gallery's ranking for a usable reference
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
                 model: str | os.PathLike | None = "default", size: int = 256, index: Any = None,
                 method: str = "fast", upsample: str = "joint-bilateral", chroma_gain: float | None = None,
                 precision: MatcherPrecision = "auto", position_prior: float = POSITION_PRIOR):
        self.device = resolve_device(device)
        self.size = size
        if chroma_gain is not None and not 0 < chroma_gain <= 3:
            raise ValueError(f"chroma_gain must be in (0, 3], got {chroma_gain}")
        self.heads: dict[str, Head] = {}  # the chosen head first; colorize_heads runs them all
        path = resolve_model(model)
        model_variant = None
        if path is not None:
            from .colorization.checkpoint import load_checkpoint

            net, meta, _ = load_checkpoint(path, map_location=self.device)
            levels, model_variant = self._adopt(path, net.config, levels, vgg_variant)
            if chroma_gain is None:  # the gain calibrated with the model
                chroma_gain = _release_gain(path, meta)
        self.levels = tuple(levels or DEFAULT_LEVELS)
        vgg_variant = self._variant(path, model_variant, vgg_weights, vgg_variant)
        self.backbone = VGG19Features(self.levels, weights=vgg_weights, variant=vgg_variant).to(self.device)
        self.matcher = Matcher(self.backbone, self.levels, method=method,  # type: ignore[arg-type]
                               precision=precision, position_prior=position_prior)
        if path is not None:
            self.heads["network"] = network_head(net, chroma_gain, self.matcher.features)
        self.heads["analogy"] = AnalogyHead()
        self.head: Head = next(iter(self.heads.values()))
        self.vgg_weights, self.vgg_variant = vgg_weights, vgg_variant
        self._index = index
        if upsample not in UPSAMPLE_METHODS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_METHODS)}, got {upsample!r}")
        self.upsample = upsample

    @staticmethod
    def _adopt(path: Path, config: Any, levels: Sequence[str] | None, variant: str | None,
               ) -> tuple[tuple[str, ...], str]:
        """The model's levels and backbone variant; an explicit choice that contradicts them is refused
        (the network only understands similarity maps of the levels and backbone it was trained on)."""
        refuse_differences(str(path), {"levels": config.levels, "vgg_variant": config.variant},
                           {"levels": levels, "vgg_variant": variant}, have_name="the model was trained with",
                           want_name="asked for", built="the model only understands the levels and VGG-19 "
                           "features it was trained on", fix="leave them unset to use the model's, or use "
                           "model='analogy'")
        return tuple(config.levels), config.variant

    @staticmethod
    def _variant(path: Path | None, model_variant: str | None, weights: Any, asked: str | None) -> str:
        """The backbone convention, decided once: what was asked for, else the model's, else a recognised
        weight file's own, else Caffe; a recognised file that contradicts the model is refused naming both."""
        own = choose_variant(weights, asked, default=None)  # refuses an explicit choice the file contradicts
        if model_variant is not None and own is not None and own != model_variant:
            raise ConfigMismatchError(f"{path}: the model was trained on {model_variant} VGG-19 features, but the "
                                      f"weight file is the {own} VGG-19; use a {model_variant} weight file, or "
                                      f"model='analogy' (--model analogy) with this one")
        return model_variant or own or DEFAULT_VARIANT

    @property
    def head_name(self) -> str:
        return self.head.name

    @property
    def chroma_gain(self) -> float:
        """How far the network head pushes its colours out from gray (1.0 without a network)."""
        net = self.heads.get("network")
        return net.chroma_gain if isinstance(net, (NetworkHead, HypercolumnHead)) else 1.0

    @property
    def colours_alone(self) -> bool:
        """Whether this Colorizer's head can colour a photo with no reference (the hypercolumn sub-net)."""
        return isinstance(self.head, HypercolumnHead)

    # ----------------------------------------------------------------- retrieval
    @property
    def index(self):
        if self._index is not None and not hasattr(self._index, "search"):
            from .retrieval import GalleryIndex

            self._index = GalleryIndex.open(self._index, weights=self.vgg_weights, device=self.device)
        return self._index

    def recommend(self, target: ImageInput, k: int = 5) -> list[Any]:
        """The ``k`` best references for ``target`` from the gallery index (best first)."""
        if self.index is None:
            raise ExemplarColorError("no gallery index: create the Colorizer with index=PATH "
                                     "(build one with `exemplar-color index build`)")
        return self.index.search(target, k=k)

    # ----------------------------------------------------------------- matching
    def working_l(self, target: Photo) -> torch.Tensor:
        """Pipeline stage: the target's L ``(1, 1, h, w)`` at the working size (short side ``size``)."""
        t = resize(target.pixels.to(self.device), working_size(*target.size, self.size)).clamp(0, 1)
        return rgb_to_lab(t)[:, :1] if t.shape[1] == 3 else gray_to_l(t)

    def working(self, target: Photo, reference: Photo) -> tuple[torch.Tensor, torch.Tensor]:
        """Pipeline stage: target L ``(1, 1, h, w)`` and reference Lab ``(1, 3, h', w')`` at the working size."""
        tl = self.working_l(target)
        hr, wr = working_size(*reference.size, self.size)
        rpx = reference.pixels if reference.pixels.shape[1] == 3 else reference.pixels.expand(-1, 3, -1, -1)
        rlab = rgb_to_lab(resize(rpx.to(self.device), (hr, wr)).clamp(0, 1))  # a gray one: matched on L
        return tl, rlab

    def read_pair(self, target: ImageInput | Photo, reference: ImageInput | Photo) -> tuple[Photo, Photo]:
        """Pipeline stage: both photos read, with the one gray-reference rule (refused) and colour-target warning."""
        t = target if isinstance(target, Photo) else read_photo(target)
        r = reference if isinstance(reference, Photo) else read_photo(reference)
        if not r.colour:
            raise GrayReferenceError(r.name, "the reference is grayscale: it has no colour to transfer; "
                                             "choose a colour photo of similar content")
        if t.colour:
            warnings.warn(f"{t.name}: the target is a colour photo; only its luminance is used", stacklevel=3)
        return t, r

    def match(self, target: ImageInput, reference: ImageInput) -> tuple[Correspondence, dict[str, np.ndarray]]:
        """Correspondence at the working size, plus ``forward`` ``(H_t, W_t, 2)`` and ``backward``
        ``(H_r, W_r, 2)`` at the images' ORIGINAL sizes, in the other image's original pixel coordinates
        (``x, y``, 0-based, pixel centres at integers)."""
        t, r = read_photo(target), read_photo(reference)
        tl, rlab = self.working(t, r)
        corr = self.matcher.match(tl, rlab)
        return corr, {d: f() for d, f in self.full_fields(corr, t.size, r.size).items()}

    @staticmethod
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

    # ----------------------------------------------------------------- colorizing
    def render(self, pixels: torch.Tensor, tl: torch.Tensor, ab: torch.Tensor) -> FullResolution:
        """Pipeline stage: the full-resolution result for the photo ``pixels``, in row bands (bounded memory)."""
        return FullResolution(pixels, tl, ab, self.upsample)

    def colorize(self, target: ImageInput, reference: ImageInput | Sequence[ImageInput] | None = None, *,
                 top_k: int = 1) -> ColorizationResult:
        """Colorize ``target`` with ``reference`` (or, with an index and no reference, the best one found).

        ``reference`` may be a list: each pixel then takes its colours from the reference that matches it
        best (:mod:`exemplar_color.multireference`; ``result.labels`` says which). In automatic mode,
        ``top_k`` > 1 uses the ``top_k`` best usable references of the gallery that way."""
        return self.colorize_heads(target, reference, top_k=top_k, heads=(self.head_name,))[self.head_name]

    def colorize_heads(self, target: ImageInput, reference: ImageInput | Sequence[ImageInput] | None = None, *,
                       top_k: int = 1, heads: Sequence[str] | None = None) -> dict[str, ColorizationResult]:
        """One correspondence, every head this Colorizer has (``network`` with a model, and ``analogy``):
        how evaluations compare the heads on exactly the same matches. ``reference``/``top_k``: as in
        :meth:`colorize`."""
        heads = heads or tuple(self.heads)
        if reference is None and self._index is None:  # no reference and no gallery: the photo alone
            return self.colorize_pairs([(target, None)], 1, heads)[0]
        if isinstance(reference, (list, tuple)) or (reference is None and top_k > 1):
            return self._colorize_references(target, reference, top_k, heads)
        return self.colorize_pairs([(target, reference)], 1, heads)[0]

    def _colorize_references(self, target: ImageInput, references: Sequence[ImageInput] | None, top_k: int,
                             heads: Sequence[str]) -> dict[str, ColorizationResult]:
        from .multireference import colorize_references

        recs: list[Any] = []
        passed: list[tuple[str, str]] = []
        if references is None:
            photo = read_photo(target)
            recs = self.recommend(target, k=max(AUTO_CANDIDATES, 2 * top_k))
            references, passed = usable_references(target, photo, recs, top_k)
            target = photo
        return colorize_references(self, target, list(references), heads, recommendations=recs, passed_over=passed)

    def colorize_alone(self, target: ImageInput) -> ColorizationResult:
        """Colorize ``target`` from the photo alone, even when this Colorizer has a gallery index (the
        hypercolumn sub-net's learnt prior; other heads raise :class:`ExemplarColorError`)."""
        return self._colorize_batch([self._prepare_alone(0, target, time.perf_counter())], (self.head_name,))[0][
            self.head_name]

    def colorize_many(self, pairs: Iterable[tuple[ImageInput, ImageInput | None]], batch_size: int = 8,
                      ) -> list[ColorizationResult]:
        """Colorize many ``(target, reference)`` pairs; pairs whose working sizes agree share a device batch."""
        return [r[self.head_name] for r in self.colorize_pairs(pairs, batch_size, (self.head_name,))]

    def colorize_video(self, source: str | os.PathLike, reference: Any = None, output: str | os.PathLike | None = None,
                       **options: Any):
        """Colorize a video file or a folder of frames into ``output`` (a video file, or a folder of PNG
        frames), streaming, with temporal consistency; ``reference``: a colour photo, several (each shot takes
        the best-matching), or, with ``reference_frame=N``, frame N of a colour video. Options and result:
        :func:`exemplar_color.video.colorize_video`."""
        from .video import colorize_video

        return colorize_video(self, source, reference, output, **options)

    def _prepare(self, i: int, target: ImageInput, reference: ImageInput | None) -> "_Prepared":
        """Read one pair (finding the reference in the gallery when there is none) at the working size."""
        t0 = time.perf_counter()
        source, recs, passed = target, [], []
        if reference is None and self._index is None:
            return self._prepare_alone(i, target, t0)
        if reference is None:
            target = read_photo(source)
            recs = self.recommend(source, k=AUTO_CANDIDATES)
            (reference,), passed = usable_references(source, target, recs, 1)
        t, r = self.read_pair(target, reference)
        tl, rlab = self.working(t, r)
        return _Prepared(i, t, r, tl, rlab, recs, passed, time.perf_counter() - t0)

    def _prepare_alone(self, i: int, target: ImageInput, t0: float) -> "_Prepared":
        """A photo to colour with no reference (the hypercolumn sub-net's prior)."""
        if not self.colours_alone:
            raise ExemplarColorError(f"the {self.head_name} head needs a reference: give one, or a gallery index "
                                     f"(index=PATH), or use a model that colours alone (the default one)")
        t = target if isinstance(target, Photo) else read_photo(target)
        if t.colour:
            warnings.warn(f"{t.name}: the target is a colour photo; only its luminance is used", stacklevel=4)
        return _Prepared(i, t, None, self.working_l(t), None, [], [], time.perf_counter() - t0)

    def colorize_pairs(self, pairs: Iterable[tuple[ImageInput, ImageInput | None]], batch_size: int,
                       heads: Sequence[str]) -> list[dict[str, ColorizationResult]]:
        """``{head: result}`` for every ``(target, reference)`` pair (reference None: the gallery's best, or the
        photo alone without a gallery); pairs whose working sizes agree share a device batch."""
        prepared = [self._prepare(i, target, reference) for i, (target, reference) in enumerate(pairs)]
        results: list[dict[str, ColorizationResult] | None] = [None] * len(prepared)
        groups: dict[tuple, list[_Prepared]] = {}
        for item in prepared:  # pairs whose working sizes agree share a device batch
            groups.setdefault((tuple(item.tl.shape), None if item.rlab is None else tuple(item.rlab.shape)),
                              []).append(item)
        for items in groups.values():
            for s in range(0, len(items), batch_size):
                chunk = items[s:s + batch_size]
                for item, res in zip(chunk, self._colorize_batch(chunk, heads)):
                    results[item.index] = res
        return results  # type: ignore[return-value]

    def _colorize_batch(self, items: list["_Prepared"], heads: Sequence[str]) -> list[dict[str, ColorizationResult]]:
        if items[0].reference is None:
            return self._colorize_alone(items)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        tl = torch.cat([it.tl for it in items])
        rlab = torch.cat([it.rlab for it in items])
        corr = self.matcher.match(tl, rlab)
        sync()
        t1 = time.perf_counter()
        ab: dict[str, torch.Tensor] = {}
        head_s: dict[str, float] = {}
        trust: dict[str, torch.Tensor] = {}
        for head in heads:
            h0 = time.perf_counter()
            if isinstance(self.heads[head], HypercolumnHead):  # its gate says where colours came from
                ab[head], trust[head] = self.heads[head].colorize(tl, corr)  # type: ignore[union-attr]
            else:
                ab[head] = self.heads[head](tl, corr)
            sync()
            head_s[head] = time.perf_counter() - h0
        out = []
        n = len(items)
        for j, item in enumerate(items):
            t, r = item.target, item.reference
            one = corr.select(j)
            fields = self.full_fields(one, t.size, r.size)
            per_head = {}
            for head in heads:
                t3 = time.perf_counter()
                full = self.render(t.pixels, tl[j:j + 1], ab[head][j:j + 1])
                image = full.image()
                sync()
                timings = {"load_s": item.load_s, "match_s": (t1 - t0) / n, "head_s": head_s[head] / n,
                           "full_resolution_s": time.perf_counter() - t3}
                timings["total_s"] = sum(timings.values())
                res = ColorizationResult(
                    image=image, _ab=full.ab_array,
                    confidence=to_array(trust[head][j:j + 1] if head in trust else one.confidence),
                    warped_ab=to_array(one.warped_ab), similarity=one.similarity[0].cpu().numpy(), reference=r.name,
                    head=head, levels=self.levels, timings=timings, recommendations=item.recommendations,
                    passed_over=item.passed_over, working_l=tl[j:j + 1].cpu(), _forward=fields["forward"],
                    _backward=fields["backward"])
                per_head[head] = res
            out.append(per_head)
        return out

    def _colorize_alone(self, items: list["_Prepared"]) -> list[dict[str, ColorizationResult]]:
        """Photos with no reference: the network's prior from the target's own features."""
        tl = torch.cat([it.tl for it in items])
        t1 = time.perf_counter()
        ab = self.head.without_reference(tl)  # type: ignore[union-attr]
        t2 = time.perf_counter()
        out = []
        for j, item in enumerate(items):
            t3 = time.perf_counter()
            full = self.render(item.target.pixels, tl[j:j + 1], ab[j:j + 1])
            image = full.image()
            timings = {"load_s": item.load_s, "match_s": 0.0, "head_s": (t2 - t1) / len(items),
                       "full_resolution_s": time.perf_counter() - t3}
            timings["total_s"] = sum(timings.values())
            h, w = tl.shape[-2:]
            res = ColorizationResult(
                image=image, _ab=full.ab_array, confidence=np.zeros((h, w), np.float32),
                warped_ab=np.zeros((h, w, 2), np.float32), similarity=np.zeros((2 * len(self.levels), h, w), np.float32),
                reference="", head=self.head_name, levels=self.levels, timings=timings, working_l=tl[j:j + 1].cpu(),
                _forward=_no_correspondence, _backward=_no_correspondence)
            out.append({self.head_name: res})
        return out


def _release_gain(path: Path, meta: dict[str, Any]) -> float:
    """The chroma gain a checkpoint's metadata asks for, checked like ``--chroma-gain`` (1 when absent)."""
    from .errors import WeightsError

    gain = meta.get("release", {}).get("chroma_gain", 1.0)
    if gain is None:
        return 1.0
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 < gain <= 3:
        raise WeightsError(f"{path}: damaged checkpoint: its chroma_gain {gain!r} is not a number in (0, 3]")
    return float(gain)


def _no_correspondence() -> np.ndarray:
    raise ExemplarColorError("this photo was coloured with no reference: it has no correspondence")


@dataclass
class _Prepared:
    """One pair read and brought to the working size, waiting for its batch."""

    index: int  # its place among the pairs asked for
    target: Photo
    reference: Photo | None  # None: coloured with no reference
    tl: torch.Tensor  # (1, 1, h, w) target L at the working size
    rlab: torch.Tensor | None  # (1, 3, h', w') reference Lab at the working size
    recommendations: list[Any]  # automatic mode: the gallery's ranking
    passed_over: list[tuple[str, str]]  # automatic mode: (path, why) ranked above the reference
    load_s: float
