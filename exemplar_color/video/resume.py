"""Resumable video output: a run's work lives in a hidden folder beside the output
(``.NAME.exemplar-work/``) that survives a kill, and the output appears under its name only when complete.

A frame is finished when its image is written (atomically) AND the state after it is saved
(``state.safetensors``: the next frame's index, the temporal state, the shot detector's memory, the
shot's reference, the cuts so far). ``resume=True`` skips the finished frames and restores that state, so
the continuation computes exactly what an uninterrupted run would have (same frames, bit for bit).

Folder output: the finished PNGs wait in ``frames/``, renamed to the output at the end. Video output:
finished frames wait as PNGs until ``segment_frames`` of them are encoded into a segment (``segments/``,
each with the source timestamps of its frames beside it); at the end the segments' packets and the source's
audio packets are muxed into the output, nothing re-encoded. A kill therefore loses no finished frame,
and the work folder holds at most one segment of PNGs.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ..errors import ConfigMismatchError, UsageError
from ..io import TEMP_TAG, atomic_write, save_image
from .io import VideoError, VideoInfo, VideoWriter, container_format, error_reason, publish_mode, require_av

WORK_TAG = ".exemplar-work"
FORMAT = 1


def work_folder(output: str | os.PathLike) -> Path:
    """Where a run writing ``output`` keeps its work until the output is complete."""
    out = Path(output)
    return out.parent / f".{out.name}{WORK_TAG}"


def source_fingerprint(source: str | os.PathLike) -> list[Any]:
    """What identifies the input between runs: size and modification time (of each frame, for a folder)."""
    p = Path(source)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    st = [f.stat() for f in files]
    return [str(p.resolve()), len(files), sum(s.st_size for s in st), max(s.st_mtime_ns for s in st)]


def photo_digest(photo: Any) -> str:
    return hashlib.sha256(photo.pixels.numpy().tobytes()).hexdigest()[:16]


class WorkFolder:
    """The hidden work of one run writing ``output`` (see the module's docstring). ``job``: what the run is
    (input, references, settings); a resumed run must be the same job."""

    def __init__(self, output: str | os.PathLike, job: dict[str, Any], *, resume: bool, info: VideoInfo,
                 segment_frames: int = 48, codec: str = "libx264", crf: int = 16):
        self.out = Path(output)
        self.path = work_folder(self.out)
        self.video = job["kind"] == "video"
        self.info, self.segment_frames, self.codec, self.crf = info, segment_frames, codec, crf
        self.frames, self.segments = self.path / "frames", self.path / "segments"
        self.next, self.pending, self.cuts, self.references = 0, [], [], []
        self.saved: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        job = json.loads(json.dumps({"format": FORMAT, **job}))  # as it reads back
        if self.path.exists():
            if not resume:
                raise UsageError(f"{self.out}: an unfinished run's work is in {self.path}; add --resume "
                                 "(resume=True) to continue it, or delete that folder to start over")
            self._lock()
            self._check_job(job)
            self._load()
        else:
            self._create(job)
            self._lock()

    # ------------------------------------------------------------------ opening
    def _create(self, job: dict[str, Any]) -> None:
        """The work folder, made whole under a temporary name and renamed: it exists complete or not at all."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=self.path.name + ".", suffix=TEMP_TAG, dir=self.path.parent))
        (tmp / "frames").mkdir()
        (tmp / "segments").mkdir()
        (tmp / "job.json").write_text(json.dumps(job, indent=1))
        try:
            os.rename(tmp, self.path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UsageError(f"{self.out}: another run is writing it (its work is in {self.path})") from None

    def _lock(self) -> None:
        self._lock_file = open(self.path / "lock", "a")
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise UsageError(f"{self.out}: another run is writing it (its work is in {self.path})") from None

    def _check_job(self, job: dict[str, Any]) -> None:
        try:
            before = json.loads((self.path / "job.json").read_text())
        except (OSError, ValueError):
            raise VideoError(self.path, "holds no readable job.json: not resumable; delete it to start over") from None
        diff = [f"{k}: {before.get(k)!r} then, {v!r} now" for k, v in job.items() if before.get(k) != v]
        if diff:
            self.close()
            raise ConfigMismatchError(f"{self.out}: the unfinished run in {self.path} was another job "
                                      f"({'; '.join(diff)}); repeat its settings, or delete that folder to start over")

    def _load(self) -> None:
        """The saved state, and the work folder cleaned down to it: temporary files, and frames or
        segments written after the last saved state, go (they are computed again)."""
        for tmp in [p for p in self.path.rglob(f"*{TEMP_TAG}*")]:
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        state = self.path / "state.safetensors"
        if state.exists():
            try:
                from safetensors import safe_open

                with safe_open(str(state), "pt") as f:
                    meta = json.loads(f.metadata()["progress"])
                    tensors = {k: f.get_tensor(k) for k in f.keys()}
            except Exception as e:
                raise VideoError(state, f"unreadable ({error_reason(e)}); delete {self.path} to start over") from None
            self.next, self.pending = meta.pop("next"), meta.pop("pending")
            self.cuts, self.references = meta.pop("cuts"), [tuple(r) for r in meta.pop("references")]
            self.saved = (tensors, meta)
        if self.video:
            first = self.next - len(self.pending)  # the first frame not in a finished segment
            for seg in self.segments.glob("seg_*"):
                if int(seg.name[4:12]) >= first:
                    seg.unlink()
            for png in self.frames.glob("*.png"):
                if not first <= int(png.stem) < self.next:
                    png.unlink()
            covered = sum(len(pts) for _, pts in self._segment_list())
            if covered != first or len(list(self.frames.glob("*.png"))) != len(self.pending):
                raise VideoError(self.path, f"is incomplete (segments cover {covered} frames, the state says "
                                            f"{first}); delete it to start over")

    # ------------------------------------------------------------------ writing
    def add(self, index: int, name: str, pts: int | None, rgb: np.ndarray, cut: bool, reference: str,
            snapshot: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> None:
        """Record finished frame ``index`` and the state after it."""
        if self.video:
            with atomic_write(self.frames / f"{index:08d}.png") as tmp:  # temporary: fast, still lossless
                Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)
            self.pending.append(index if pts is None else pts)
        else:
            save_image(self.frames / f"{name}.png", rgb)
        if cut:
            self.cuts.append(index)
            self.references.append((index, reference))
        self.next = index + 1
        done = self.video and len(self.pending) >= self.segment_frames and self._encode_pending()
        self._save(snapshot)
        if done:
            for png in self.frames.glob("*.png"):
                png.unlink()

    def _encode_pending(self) -> bool:
        """The waiting PNGs as one encoded segment (its frames' timestamps beside it)."""
        first = self.next - len(self.pending)
        seg = self.segments / f"seg_{first:08d}{self.out.suffix}"
        with atomic_write(seg.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(self.pending))
        writer = VideoWriter(seg, self.info, codec=self.codec, crf=self.crf)
        try:
            for i, pts in enumerate(self.pending):
                writer.write(np.asarray(Image.open(self.frames / f"{first + i:08d}.png").convert("RGB")), pts)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self.pending = []
        return True

    def _save(self, snapshot: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> None:
        tensors, meta = snapshot
        progress = {"next": self.next, "pending": self.pending, "cuts": self.cuts, "references": self.references,
                    **meta}
        with atomic_write(self.path / "state.safetensors") as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata={"progress": json.dumps(progress)})

    # ------------------------------------------------------------------ finishing
    def _segment_list(self) -> list[tuple[Path, list[int]]]:
        segs = sorted(p for p in self.segments.glob(f"seg_*{self.out.suffix}") if TEMP_TAG not in p.name)
        return [(p, json.loads(p.with_suffix(".json").read_text())) for p in segs]

    def commit(self, source: str | os.PathLike | None, trim_audio: bool = False) -> Path:
        """The output under its final name: the frames folder renamed, or the segments and the source's
        audio muxed (with ``trim_audio``, the packets that start before the last frame ends); then the
        work folder goes."""
        if not self.video:
            publish_mode(self.frames, 0o777)
            if self.out.exists():
                self.out.rmdir()  # an empty folder (checked before the run)
            os.replace(self.frames, self.out)
        else:
            if self.pending:
                self._encode_pending()
            segments = self._segment_list()
            tb = self.info.time_base or 1 / self.info.fps
            until = float((segments[-1][1][-1] + 1 / (self.info.fps * tb)) * tb) if trim_audio else None
            final = self.path / f"final{self.out.suffix}"  # a kill while muxing leaves it in the work folder
            mux(segments, final, self.out, self.info, source, until)
            publish_mode(final)
            os.replace(final, self.out)
        self.remove()
        return self.out

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        lock = getattr(self, "_lock_file", None)
        if lock is not None and not lock.closed:
            lock.close()


def _read_packets(path: Path, pts: list[int]) -> list[Any]:
    av = require_av()
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    if len(packets) != len(pts):
        raise VideoError(path, f"holds {len(packets)} frames, {len(pts)} were encoded: a damaged segment")
    return packets


def _reorder_delay(packets: list[Any]) -> int:
    """How many frames decoding runs ahead of display (B-frames), from the packets' order."""
    rank = {q: r for r, q in enumerate(sorted(p.pts for p in packets))}
    return max(k - rank[p.pts] for k, p in enumerate(packets))


def _video_packets(segments: list[tuple[Path, list[int]]], time_base: Fraction, step: int) -> Iterator[Any]:
    """The segments' video packets with the source's timestamps. Containers may shift a segment's start (an
    edit list), round its times (Matroska's milliseconds) or keep no decode times, so each packet takes the
    recorded pts of its rank, and decode times are the display times delayed by the largest reordering of
    any segment, the same all through (as one encoder would have it; ``step``: one frame's duration)."""
    delay = max(_reorder_delay(_read_packets(path, pts)) for path, pts in segments)
    before: list[int] = []  # the previous segment's last pts
    for path, pts in segments:
        packets = _read_packets(path, pts)
        rank = {q: r for r, q in enumerate(sorted(p.pts for p in packets))}
        times = before + pts
        for k, p in enumerate(packets):
            i = len(before) + k - delay
            dts = times[i] if i >= 0 else pts[0] - (delay - k) * step
            p.time_base, p.pts, p.dts, p.duration = time_base, pts[rank[p.pts]], dts, step
            yield p
        before = pts[-delay:] if delay else []


def mux(segments: list[tuple[Path, list[int]]], tmp: Path, out: Path, info: VideoInfo,
        source: str | os.PathLike | None, until: float | None) -> None:
    """Write ``segments`` (encoded video) and the audio packets of ``source`` into ``tmp`` (the format of
    ``out``), interleaved by time, copied as they are."""
    av = require_av()
    tb = info.time_base or 1 / info.fps
    src = None
    try:
        with av.open(str(tmp), mode="w", format=container_format(out)) as o:
            with av.open(str(segments[0][0])) as first:
                vs = o.add_stream_from_template(first.streams.video[0])
            vs.time_base = tb
            vs.codec_context.framerate = info.fps  # the rate the container states (not guessed from durations)
            step = max(1, round(1 / (info.fps * tb)))
            streams: list[Iterator[tuple[float, int, Any]]] = [
                ((float(p.dts * tb), 0, p) for p in _video_packets(segments, tb, step))]
            if source is not None and info.has_audio:
                src = av.open(str(source))
                a = src.streams.audio[0]
                oa = o.add_stream_from_template(a)
                streams.append((float(p.dts * p.time_base), 1, p) for p in src.demux(a)
                               if p.dts is not None and (until is None or p.pts * p.time_base < until))
            for _, kind, packet in heapq.merge(*streams, key=lambda x: (x[0], x[1])):
                packet.stream = vs if kind == 0 else oa
                o.mux(packet)
    except av.error.FFmpegError as e:
        raise VideoError(out, f"cannot be written ({error_reason(e)})") from None
    finally:
        if src is not None:
            src.close()
