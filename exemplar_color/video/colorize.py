"""Video colorization on top of :class:`~exemplar_color.pipeline.Colorizer`: frames stream through the
photo pipeline (working-size match, head, guided upsampling along each frame's own L), with two additions:
the reference's VGG features are computed once per reference, not once per frame, and (``temporal=True``)
each frame's colours are fused with the previous output's, moved by a cheap block-matching flow on L and
weighted by both confidences (:mod:`.temporal`). A detected cut resets that state and, with several
references, picks the best-matching reference for the new shot.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..color import lab_to_image
from ..layout import to_array, to_tensor
from ..photos import Photo, usable_references
from ..working import is_gray
from .io import (
    FolderWriter,
    Frame,
    VideoError,
    VideoWriter,
    is_video_path,
    open_source,
    read_frame,
)
from .temporal import (
    ShotDetector,
    TemporalState,
    block_flow,
    flow_confidence,
    fuse,
    warp,
)


@dataclass
class ColorizedFrame:
    """One output frame: ``rgb`` ``(H, W, 3)`` uint8 at the input's size, working-size ``ab`` (fused when
    temporal), whether it starts a shot, and which reference coloured it."""

    index: int
    name: str
    pts: int | None
    rgb: np.ndarray
    ab: np.ndarray
    cut: bool
    reference: str
    seconds: float


@dataclass
class VideoResult:
    output: Path | None
    frames: int
    width: int
    height: int
    fps: float
    temporal: bool
    audio_copied: bool
    cuts: list[int] = field(default_factory=list)
    references: list[tuple[int, str]] = field(default_factory=list)  # (first frame of the shot, reference)
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _as_list(reference: Any) -> list[Any]:
    if reference is None:
        return []
    if isinstance(reference, (list, tuple)):
        return list(reference)
    return [reference]


def load_references(colorizer, source, reference=None, reference_frame: int | None = None) -> list[Any]:
    """The reference photos (:class:`~exemplar_color.photos.Photo`), read and checked before any frame:
    photos as given; with ``reference_frame=N``, frame N of ``reference`` when it is a video (a colour
    version of the source), else of ``source`` itself (which must then be in colour)."""
    from ..photos import GrayReferenceError, read_photo

    refs = _as_list(reference)
    if reference_frame is not None:
        if len(refs) > 1:
            raise UsageError("reference_frame takes its frame from one video: give at most one reference")
        origin = refs[0] if refs else source
        if not isinstance(origin, (str, os.PathLike)):
            raise UsageError("reference_frame needs a video file or folder of frames to read the frame from")
        rgb = read_frame(origin, reference_frame)
        photo = read_photo(rgb)
        photo.name = f"{origin}#frame{reference_frame}"
        refs = [photo]
    photos = []
    for r in refs:
        if isinstance(r, (str, os.PathLike)) and is_video_path(r):
            raise UsageError(f"{r} is a video: give reference_frame=N (--reference-frame N) to use one of its frames")
        p = r if hasattr(r, "pixels") else read_photo(r)
        if not p.colour:
            raise GrayReferenceError(p.name, "the reference is grayscale: it has no colour to transfer; "
                                             "choose a colour photo of similar content")
        photos.append(p)
    if not photos and colorizer.index is None:
        raise UsageError("give a reference (a colour photo, several, or reference_frame=N), "
                         "or create the Colorizer with a gallery index")
    return photos


class _FrameColorizer:
    """The per-frame work, reusing the Colorizer's own steps; holds the temporal state and the cache of
    reference features."""

    def __init__(self, colorizer, references: list[Any], temporal: bool, detector: ShotDetector | None,
                 weight: float = 3.0):
        self.c = colorizer
        self.refs = references
        self.temporal = temporal
        self.detector = detector
        self.weight = weight
        self.state: TemporalState | None = None
        self.ref = None
        self._features: dict[int, tuple[tuple, dict[str, torch.Tensor]]] = {}

    def _reference(self, photo, ref) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reference's Lab at the working size and its unit VGG features, computed once per reference."""
        cached = self._features.get(id(ref))
        if cached is None:
            rlab = self.c._working(photo, ref)[1]
            cached = (rlab, self.c.matcher.features(rlab[:, :1]))
            self._features[id(ref)] = cached
        return cached

    def _match(self, photo, tl: torch.Tensor, ref):
        rlab, fr = self._reference(photo, ref)
        self.c.matcher._check_size(tl.shape[-2:], rlab.shape[-2:])
        return self.c.matcher.match_features(self.c.matcher.features(tl), fr, rlab, tuple(tl.shape[-2:]))

    def _pick(self, photo, tl: torch.Tensor, frame: Frame):
        """A new shot's reference: the only one; the best-matching of several (mean forward similarity);
        or, with no reference, the gallery's best for this frame."""
        if not self.refs:
            recs = self.c.recommend(frame.rgb, k=10)
            (ref,), _ = usable_references(frame.rgb, photo, recs, 1)
            self._features.clear()
            return ref, None
        if len(self.refs) == 1:
            return self.refs[0], None
        best = None
        for ref in self.refs:
            corr = self._match(photo, tl, ref)
            score = float(corr.forward_similarity.mean())
            if best is None or score > best[0]:
                best = (score, ref, corr)
        return best[1], best[2]

    def __call__(self, frame: Frame) -> ColorizedFrame:
        t0 = time.perf_counter()
        photo = Photo(frame.name, to_tensor(frame.rgb.astype(np.float32) / 255), False)
        tl = self.c._working(photo, photo)[0]  # the target's working size does not depend on the reference
        new_shot = self.detector is not None and self.detector(tl)
        cut = self.ref is None or new_shot
        corr = None
        if cut:
            self.state = None
            self.ref, corr = self._pick(photo, tl, frame)
        if corr is None:
            corr = self._match(photo, tl, self.ref)
        ab = self.c.head(tl, corr)
        if self.temporal:
            if self.state is not None and self.state.l.shape == tl.shape:
                fwd = block_flow(tl, self.state.l)
                bwd = block_flow(self.state.l, tl)
                conf = flow_confidence(tl, self.state.l, fwd, bwd)
                ab = fuse(ab, corr.confidence, warp(self.state.ab, fwd), conf, weight=self.weight)
            self.state = TemporalState(tl, ab)
        full_l = self.c._full_l(photo)
        image = lab_to_image(full_l, self.c._full_resolution(full_l, tl, ab))
        return ColorizedFrame(frame.index, frame.name, frame.pts, np.asarray(image), to_array(ab),
                              cut, self.ref.name, time.perf_counter() - t0)


def iter_colorized(colorizer, source, reference=None, *, reference_frame: int | None = None, temporal: bool = True,
                   detect_cuts: bool = True, max_frames: int | None = None, weight: float = 3.0,
                   on_audio=None, _reader=None) -> Iterator[ColorizedFrame]:
    """Colorized frames of ``source`` (a video file or a folder of frames), one at a time (streaming)."""
    refs = load_references(colorizer, source, reference, reference_frame)
    reader = _reader or open_source(source)
    work = _FrameColorizer(colorizer, refs, temporal, ShotDetector() if detect_cuts else None, weight)
    warned = False
    try:
        with torch.inference_mode():
            for frame in reader.frames(on_audio=on_audio):
                if max_frames is not None and frame.index >= max_frames:
                    break
                if not warned and not is_gray(to_tensor(frame.rgb[::4, ::4].astype(np.float32) / 255)):
                    warned = True
                    warnings.warn(f"{source}: the video is in colour; only its luminance is used", stacklevel=2)
                yield work(frame)
    finally:
        if _reader is None:
            reader.close()


def colorize_video(colorizer, source, reference=None, output=None, *, reference_frame: int | None = None,
                   temporal: bool = True, detect_cuts: bool = True, fps: float | None = None, crf: int = 16,
                   codec: str = "libx264", max_frames: int | None = None, progress: bool = False,
                   weight: float = 3.0) -> VideoResult:
    """Colorize ``source`` into ``output`` (a video file by its extension, e.g. ``.mp4``, or else a folder of
    PNG frames). The output keeps the size, frame rate, frame count and timestamps, and copies the audio
    packets of a video source unchanged; it appears under its name only when complete."""
    if output is None:
        raise UsageError("colorize_video needs an output (a video file or a folder); "
                         "use exemplar_color.video.iter_colorized for frames in memory")
    out = Path(output)
    if os.path.exists(source) and out.exists() and os.path.samefile(source, out):
        raise UsageError(f"{out}: the output would replace the input")
    refs = load_references(colorizer, source, reference, reference_frame)  # a bad reference: before any output
    reader = open_source(source, Fraction(fps).limit_denominator(1001) if fps else None)
    start = time.perf_counter()
    try:
        if is_video_path(out):
            writer = VideoWriter(out, reader.info, reader.audio, codec=codec, crf=crf)
        elif out.suffix and not out.is_dir():
            raise UsageError(f"{out}: not a video extension (.mp4, .mkv, .mov, .webm, .avi) and not a folder")
        else:
            writer = FolderWriter(out)
        result = VideoResult(None, 0, reader.info.width, reader.info.height, float(reader.info.fps), temporal,
                             isinstance(writer, VideoWriter) and writer.audio is not None)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=min(x for x in (reader.info.frames, max_frames) if x) if (reader.info.frames or max_frames)
                       else None, unit="frame", desc="colorize-video", file=sys.stderr)
        try:
            for cf in iter_colorized(colorizer, source, refs, temporal=temporal, detect_cuts=detect_cuts,
                                     max_frames=max_frames, weight=weight, on_audio=writer.write_audio,
                                     _reader=reader):
                if isinstance(writer, VideoWriter):
                    writer.write(cf.rgb, cf.pts)
                else:
                    writer.write(cf.rgb, cf.name)
                result.frames += 1
                if cf.cut:
                    result.cuts.append(cf.index)
                    result.references.append((cf.index, cf.reference))
                if bar is not None:
                    bar.update(1)
            result.output = writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        reader.close()
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["ColorizedFrame", "VideoError", "VideoResult", "colorize_video", "iter_colorized", "load_references"]
