"""Video colorization on top of :class:`~exemplar_color.pipeline.Colorizer`: frames stream through the
photo pipeline (working-size match, head, guided upsampling along each frame's own L), with two additions:
the reference's VGG features are computed once per reference, not once per frame, and (``temporal=True``)
each frame's colours are fused with the previous output's, moved by a cheap block-matching flow on L and
weighted by both confidences (:mod:`.temporal`). A detected cut resets that state and, with several
references, picks the best-matching reference for the new shot.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..layout import to_array
from ..photos import check_reference, read_photo
from ..recommendations import AUTO_CANDIDATES, usable_references
from .io import Frame, VideoError, VideoReader, is_video_path, open_source, read_frame
from .resume import WorkFolder, photo_digest, source_fingerprint
from .motion import DEFAULT_FLOW, ROUND_TRIP_PX, check_flow, detail_kept, flow_confidence, optical_flow, warp
from .shots import ShotDetector, match_score, suits
from .temporal import TemporalState, fuse, guard


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
    resumed_at: int = 0  # frames finished by an earlier, interrupted run (not coloured again)

    @property
    def frames_per_second(self) -> float:
        """Frames coloured by this run per second."""
        return (self.frames - self.resumed_at) / self.seconds if self.seconds else 0.0


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
        photos.append(check_reference(r if hasattr(r, "pixels") else read_photo(r)))
    if not photos and colorizer.index is None and not colorizer.colours_alone:
        raise UsageError("give a reference (a colour photo, several, or reference_frame=N), "
                         "or create the Colorizer with a gallery index, or use a model that colours alone")
    return photos


class _FrameColorizer:
    """The per-frame work, reusing the Colorizer's own steps; holds the temporal state and the cache of
    reference features."""

    def __init__(self, colorizer, references: list[Any], temporal: bool, detector: ShotDetector | None,
                 weight: float = 20.0, flow: str = DEFAULT_FLOW):
        self.c = colorizer
        self.refs = references
        self.temporal = temporal
        self.detector = detector
        self.weight = weight
        self.flow = flow
        self.state: TemporalState | None = None
        self.ref = None
        self.best_match = 0.0  # the best match score a shot's reference has had so far
        self.started = False
        self.saw_colour = False  # whether a frame had colour (only its luminance is used)
        self._features: dict[int, tuple[tuple, dict[str, torch.Tensor]]] = {}

    def _reference(self, photo, ref) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reference's Lab at the working size and its unit VGG features, computed once per reference."""
        cached = self._features.get(id(ref))
        if cached is None:
            rlab = self.c.working(photo, ref)[1]
            cached = (rlab, self.c.matcher.features(rlab[:, :1]))
            self._features[id(ref)] = cached
        return cached

    def _match(self, photo, tl: torch.Tensor, ref):
        rlab, fr = self._reference(photo, ref)
        self.c.matcher.check_size(tl.shape[-2:], rlab.shape[-2:])
        return self.c.matcher.match_features(self.c.matcher.features(tl), fr, rlab, tuple(tl.shape[-2:]))

    def _pick(self, photo, tl: torch.Tensor, frame: Frame):
        """A new shot's reference and its correspondence: the best-matching of the given references
        (:func:`.shots.match_score`), or with none given the gallery's best for this frame. ``(None, None)``
        -- the sub-net's own prior -- when the model colours alone and the best reference suits this shot
        far less than one suited an earlier shot (:func:`.shots.suits`): after a cut to a scene the
        references do not show, the previous shot's colours are not carried over."""
        if self.c.index is None and not self.refs:
            return None, None
        if self.refs:
            candidates = self.refs
        else:
            recs = self.c.recommend(frame.rgb, k=AUTO_CANDIDATES)
            candidates, _ = usable_references(frame.rgb, photo, recs, 1, self.c.size, self.c.device)
            self._features.clear()
        if len(candidates) == 1 and not self.c.colours_alone:
            return candidates[0], None  # nothing else to choose
        scored = [(match_score(corr), i, corr) for i, corr in
                  enumerate(self._match(photo, tl, ref) for ref in candidates)]
        score, i, corr = max(scored, key=lambda x: x[0])
        best_before, self.best_match = self.best_match, max(self.best_match, score)
        if self.c.colours_alone and not suits(score, best_before):
            return None, None
        return candidates[i], corr

    def __call__(self, frame: Frame) -> ColorizedFrame:
        t0 = time.perf_counter()
        photo = replace(read_photo(frame.rgb, self.c.size, self.c.device), name=frame.name)
        self.saw_colour = self.saw_colour or photo.colour
        tl = photo.lab[:, :1]  # read at the working size; it does not depend on the reference
        new_shot = self.detector is not None and self.detector(tl)
        cut = not self.started or new_shot
        self.started = True
        corr = None
        if cut:
            self.state = None
            self.ref, corr = self._pick(photo, tl, frame)
        if self.ref is None:
            ab = self.c.head.without_reference(tl)
            confidence = torch.zeros_like(tl)  # nothing came from a reference
        else:
            if corr is None:
                corr = self._match(photo, tl, self.ref)
            ab, confidence = self.c.head(tl, corr), corr.confidence
        if self.temporal:
            if self.state is not None and self.state.l.shape == tl.shape:
                ab, weight = self._fuse(tl, ab, confidence)
            else:
                weight = 0.25 + confidence
            self.state = TemporalState(tl, ab, weight)
        image = self.c.render(photo.pixels, tl, ab).image()
        return ColorizedFrame(frame.index, frame.name, frame.pts, np.asarray(image), to_array(ab),
                              cut, "" if self.ref is None else self.ref.name, time.perf_counter() - t0)

    def _fuse(self, tl: torch.Tensor, ab: torch.Tensor, confidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This frame's own colours fused with the previous output's, moved along the motion; the guard
        (:func:`.temporal.guard`) keeps the frame's own wherever the motion does not explain the frame."""
        prev = self.state
        fwd, bwd = optical_flow(tl, prev.l, self.flow), optical_flow(prev.l, tl, self.flow)
        sure = guard(flow_confidence(tl, prev.l, fwd, bwd, sigma_px=ROUND_TRIP_PX[self.flow])) * detail_kept(fwd)
        return fuse(ab, confidence, warp(prev.ab, fwd), sure, warp(prev.weight, fwd), memory=self.weight)

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What the next frame needs, to be saved and :meth:`restore` d: the temporal state, the shot
        detector's memory and the shot's reference (its place among the given ones, or a gallery path)."""
        tensors: dict[str, torch.Tensor] = {}
        if self.state is not None:
            tensors.update(l=self.state.l, ab=self.state.ab, weight=self.state.weight)
        if self.detector is not None and self.detector.previous is not None:
            tensors.update(hist=torch.from_numpy(self.detector.previous[0]), thumb=torch.from_numpy(self.detector.previous[1]))
        which = next((i for i, r in enumerate(self.refs) if r is self.ref), None)
        return tensors, {"reference": which if which is not None else getattr(self.ref, "name", None),
                         "best_match": self.best_match}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        ref = meta.get("reference")
        self.ref = self.refs[ref] if isinstance(ref, int) else read_photo(ref) if ref else None
        self.started = True  # frames before this one were coloured
        self.best_match = float(meta.get("best_match", 0.0))
        if "l" in tensors:
            self.state = TemporalState(*(tensors[k].to(self.c.device) for k in ("l", "ab", "weight")))
        if self.detector is not None and "hist" in tensors:
            self.detector.previous = (tensors["hist"].numpy(), tensors["thumb"].numpy())


def iter_colorized(colorizer, source, reference=None, *, reference_frame: int | None = None, temporal: bool = True,
                   detect_cuts: bool = True, max_frames: int | None = None, weight: float = 20.0,
                   flow: str = DEFAULT_FLOW) -> Iterator[ColorizedFrame]:
    """Colorized frames of ``source`` (a video file or a folder of frames), one at a time (streaming)."""
    refs = load_references(colorizer, source, reference, reference_frame)
    check_flow(flow)
    work = _FrameColorizer(colorizer, refs, temporal, ShotDetector() if detect_cuts else None, weight, flow)
    with open_source(source) as reader:
        yield from _colorized(work, reader, source, max_frames)


def _colorized(work: _FrameColorizer, reader, source, max_frames: int | None, start: int = 0,
               ) -> Iterator[ColorizedFrame]:
    """Frames ``start`` .. ``max_frames`` of ``reader`` through ``work`` (earlier ones decoded, not coloured)."""
    warned = False
    with torch.inference_mode():
        for frame in reader.frames():
            if max_frames is not None and frame.index >= max_frames:
                break
            if frame.index < start:
                continue
            coloured = work(frame)
            if not warned and work.saw_colour:  # judged on the frame's working Lab, read once
                warned = True
                warnings.warn(f"{source}: the video is in colour; only its luminance is used", stacklevel=3)
            yield coloured


def _job(colorizer, source, refs: list[Any], output: Path, **settings: Any) -> dict[str, Any]:
    """What a run is, for :class:`~.resume.WorkFolder` to tell whether a resumed run is the same one."""
    net = colorizer.heads.get("network")
    return {"kind": "video" if is_video_path(output) else "frames", "source": source_fingerprint(source),
            "references": [[getattr(r, "name", "?"), photo_digest(r)] for r in refs],
            "colorizer": {"head": colorizer.head_name, "levels": list(colorizer.levels), "size": colorizer.size,
                          "vgg_variant": colorizer.vgg_variant, "upsample": colorizer.upsample,
                          "chroma_gain": colorizer.chroma_gain, **colorizer.matcher.settings,
                          **({"vivid": True} if colorizer.vivid else {}),
                          "device": colorizer.device.type,
                          "network": None if net is None else _weights_digest(net.net)},
            **settings}


def _weights_digest(net: torch.nn.Module) -> str:
    """A cheap fingerprint of a network's weights (the first values of each tensor)."""
    h = hashlib.sha256()
    for t in net.state_dict().values():
        h.update(t.detach().flatten()[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _progress_bar(total: int | None, start: int):
    """A progress bar on stderr that always shows frames/s (tqdm's default turns to s/frame below 1)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit=" frames", desc="colorize-video", file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                           "[{elapsed}<{remaining}, {rate_noinv_fmt}]" if total else None)


def colorize_video(colorizer, source, reference=None, output=None, *, reference_frame: int | None = None,
                   temporal: bool = True, detect_cuts: bool = True, fps: float | None = None, crf: int = 16,
                   codec: str = "libx264", max_frames: int | None = None, progress: bool = False,
                   weight: float = 20.0, resume: bool = False, segment_frames: int = 48,
                   overwrite: bool = False, flow: str = DEFAULT_FLOW) -> VideoResult:
    """Colorize ``source`` into ``output`` (a video file by its extension, e.g. ``.mp4``, or else a folder of
    PNG frames). The output keeps the size, frame rate, frame count and timestamps, and copies the audio
    packets of a video source unchanged; it appears under its name only when complete.

    The work waits in a hidden folder beside the output (:mod:`.resume`) that a kill or Ctrl-C leaves
    behind; ``resume=True`` continues from it, skipping finished frames, with the same result as an
    uninterrupted run. A video output is encoded in segments of ``segment_frames`` frames (one keyframe
    each) as the run goes. An existing output file is refused (UsageError) unless ``overwrite=True``."""
    if output is None:
        raise UsageError("colorize_video needs an output (a video file or a folder); "
                         "use exemplar_color.video.iter_colorized for frames in memory")
    check_flow(flow)
    if segment_frames < 1:
        raise UsageError(f"segment_frames must be at least 1, got {segment_frames}")
    out = Path(output)
    if os.path.exists(source) and out.exists() and os.path.samefile(source, out):
        raise UsageError(f"{out}: the output would replace the input")
    if not is_video_path(out) and (out.suffix and not out.is_dir() or out.is_dir() and any(out.iterdir())):
        raise UsageError(f"{out}: give a video file (.mp4, .mkv, .mov, .webm, .avi) or a new or empty folder")
    if not overwrite and os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"{out} already exists; nothing was written: give overwrite=True (--overwrite) to replace "
                         f"it, or choose another output")
    refs = load_references(colorizer, source, reference, reference_frame)  # a bad reference: before any output
    reader = open_source(source, Fraction(fps).limit_denominator(1001) if fps else None)
    start_time = time.perf_counter()
    try:
        if isinstance(reader, VideoReader):
            reader.check_complete(max_frames)  # a cut file: refused before any frame, naming both counts
        job = _job(colorizer, source, refs, out, reference_frame=reference_frame, temporal=temporal,
                   detect_cuts=detect_cuts, weight=weight, fusion="recursive+guard", flow=flow, fps=fps, crf=crf,
                   codec=codec, max_frames=max_frames, segment_frames=segment_frames)
        work = WorkFolder(out, job, resume=resume, info=reader.info, segment_frames=segment_frames, codec=codec,
                          crf=crf)
        frames = _FrameColorizer(colorizer, refs, temporal, ShotDetector() if detect_cuts else None, weight, flow)
        if work.saved is not None:
            frames.restore(*work.saved)
        known = [x for x in (reader.info.frames, max_frames) if x]
        resumed_at = work.next
        bar = _progress_bar(min(known) if known else None, resumed_at) if progress else None
        try:
            for cf in _colorized(frames, reader, source, max_frames, start=resumed_at):
                work.add(cf.index, cf.name, cf.pts, cf.rgb, cf.cut, cf.reference, frames.snapshot())
                if bar is not None:
                    bar.update(1)
            cut_short = max_frames is not None and work.next >= max_frames
            output_path = work.commit(source if isinstance(reader, VideoReader) else None, trim_audio=cut_short)
        except VideoError:
            work.remove()  # the input is at fault: resuming would not help
            raise
        except BaseException:
            if work.next == 0:
                work.remove()
            work.close()
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        reader.close()
    return VideoResult(output_path, work.next, reader.info.width, reader.info.height, float(reader.info.fps),
                       temporal, work.video and reader.info.has_audio, list(work.cuts),
                       [tuple(r) for r in work.references], time.perf_counter() - start_time, resumed_at)


__all__ = ["ColorizedFrame", "VideoError", "VideoResult", "colorize_video", "iter_colorized", "load_references"]
