"""Video and frame-folder input/output that streams: one frame in memory at a time.

Video files go through PyAV (FFmpeg in its wheels; ``pip install exemplar_color[video]``). Readers yield
:class:`Frame` (8-bit RGB, ``pts`` in the stream's ``time_base``); writers keep the input's size, frame rate,
timestamps. The writer works under a temporary name beside the final one (``.NAME.XXXX.exemplar-tmp.EXT``)
and renames it at the end, so an error or Ctrl-C leaves nothing under the final name; the output of a whole
run (frame folder, or segments muxed with the source's audio) is put together by :mod:`.resume`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ExemplarColorError, ImageError
from ..io import IMAGE_EXTENSIONS, TEMP_TAG, list_images, load_image

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
DEFAULT_FPS = Fraction(25)


class VideoError(ImageError):
    """A video (or frame folder) cannot be used; ``path`` names it."""


class VideoDependencyError(ExemplarColorError, ImportError):
    """PyAV, needed for video files, is not installed."""


class NoVideoStreamError(VideoError):
    """The file is a container without a video stream (e.g. audio only)."""


class EmptyVideoError(VideoError):
    """The video (or folder) holds no frame."""


class TruncatedVideoError(VideoError):
    """The video's frames end before the frame count (or duration) its header declares."""


def require_av():
    """The ``av`` module, or one clear error saying how to get it."""
    try:
        import av
    except ImportError:
        raise VideoDependencyError("video files need PyAV: pip install 'exemplar_color[video]' (or pip install av); "
                                   "folders of frames work without it") from None
    return av


def is_video_path(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir()


@dataclass
class Frame:
    """One decoded frame: ``rgb`` ``(H, W, 3)`` uint8, its index, and its timestamp (``pts * time_base`` s)."""

    rgb: np.ndarray
    index: int
    pts: int | None
    time_base: Fraction | None
    name: str

    @property
    def time(self) -> float | None:
        return None if self.pts is None or self.time_base is None else float(self.pts * self.time_base)


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None  # as the container says (None when unknown)
    time_base: Fraction | None
    has_audio: bool
    sample_aspect_ratio: Fraction | None = None


class VideoReader:
    """Frames of a video file, decoded one at a time."""

    def __init__(self, path: str | os.PathLike):
        av = require_av()
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(self.path, "no such file")
        if self.path.is_dir():
            raise VideoError(self.path, "is a folder (a folder of frames needs image files in it)")
        try:
            self._container = av.open(str(self.path))
        except Exception as e:  # av.error.InvalidDataError and friends
            raise VideoError(self.path, f"not a readable video ({error_reason(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise NoVideoStreamError(self.path, "has no video stream")
        self.stream = self._container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.audio = self._container.streams.audio[0] if self._container.streams.audio else None
        cc = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS
        self.info = VideoInfo(cc.width, cc.height, Fraction(rate), self.stream.frames or None,
                              Fraction(self.stream.time_base) if self.stream.time_base else None,
                              self.audio is not None,
                              Fraction(self.stream.sample_aspect_ratio) if self.stream.sample_aspect_ratio else None)
        if not cc.width or not cc.height:
            self.close()
            raise VideoError(self.path, "the video stream has no picture size (damaged header)")

    def declared_frames(self) -> int | None:
        """The frames the file says it holds: its frame count, else its duration times its frame rate."""
        if self.info.frames:
            return self.info.frames
        duration = self.stream.duration * self.stream.time_base if self.stream.duration and self.stream.time_base \
            else self._container.duration / 1_000_000 if self._container.duration else None
        return int(duration * self.info.fps) if duration else None  # rounded down: never more than there are

    def check_complete(self, max_frames: int | None = None) -> None:
        """Refuse a file whose video packets end before its declared frames (a cut download or copy), by
        reading its packets without decoding them; with ``max_frames``, only those first frames must be there."""
        declared = self.declared_frames()
        if not declared:
            return
        av = require_av()
        try:
            with av.open(str(self.path)) as c:
                held = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        except av.error.FFmpegError:
            return  # frames() says what breaks, and where
        if held < min(declared, max_frames or declared):
            raise TruncatedVideoError(self.path, f"truncated: it holds {held} of the {declared} frames it declares "
                                                 f"(a cut download or copy?); give the complete file, or --max-frames N "
                                                 f"(max_frames=N) for its first N")

    def frames(self) -> Iterator[Frame]:
        av = require_av()
        i = 0
        try:
            for packet in self._container.demux(self.stream):
                for vf in packet.decode():
                    yield Frame(vf.to_ndarray(format="rgb24"), i, vf.pts, Fraction(vf.time_base) if vf.time_base
                                else self.info.time_base, f"{self.path.stem}_{i:06d}")
                    i += 1
        except av.error.FFmpegError as e:
            raise VideoError(self.path, f"cannot be decoded after {i} frames ({error_reason(e)})") from None
        if i == 0:
            raise EmptyVideoError(self.path, "has no frame that can be decoded")
        declared = self.declared_frames()
        if declared and i < declared:  # the decodable frames end early: never a silently shorter result
            raise TruncatedVideoError(self.path, f"truncated: only {i} of the {declared} frames it declares can be "
                                                 f"decoded; --max-frames {i} (max_frames={i}) colorizes those")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def error_reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) < 160 else text[:157] + "..."


class FolderReader:
    """Frames of a folder of images (sorted by name), at ``fps`` (no timestamps of their own)."""

    def __init__(self, path: str | os.PathLike, fps: Fraction = DEFAULT_FPS):
        self.path = Path(path)
        self.files = list_images(self.path, recursive=False)
        if not self.files:
            raise EmptyVideoError(self.path, "holds no image file to use as frames")
        first = np.asarray(Image.open(self.files[0]).size)
        self.info = VideoInfo(int(first[0]), int(first[1]), Fraction(fps), len(self.files), 1 / Fraction(fps), False)
        self.audio = None

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            rgb = (load_image(f, mode="RGB") * 255 + 0.5).astype(np.uint8)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(f, f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the first frame "
                                    f"{self.info.width}x{self.info.height}: a video's frames share one size")
            yield Frame(rgb, i, i, self.info.time_base, f.stem)

    def close(self) -> None:
        pass

    def __enter__(self) -> FolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_source(path: str | os.PathLike, fps: Fraction | None = None) -> VideoReader | FolderReader:
    p = Path(path)
    if p.is_dir():
        return FolderReader(p, fps or DEFAULT_FPS)
    if not p.exists():
        raise VideoError(p, "no such file or folder")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(p, "is a single image; use `exemplar-color colorize` for photos, or give a folder of frames")
    return VideoReader(p)


def read_frame(path: str | os.PathLike, n: int) -> np.ndarray:
    """Frame ``n`` (0-based) of a video file or frame folder, as ``(H, W, 3)`` uint8 RGB (decodes up to it)."""
    if n < 0:
        raise VideoError(path, f"frame {n} does not exist (frames count from 0)")
    with open_source(path) as src:
        for fr in src.frames():
            if fr.index == n:
                return fr.rgb
    raise VideoError(path, f"has no frame {n} (it has {fr.index + 1})")


class VideoWriter:
    """Encodes frames (video only) into a video file under a temporary name; renamed over ``path`` by
    :meth:`commit` (and removed by :meth:`abort`)."""

    def __init__(self, path: str | os.PathLike, info: VideoInfo, codec: str = "libx264", crf: int = 16,
                 pix_fmt: str | None = None):
        av = require_av()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=TEMP_TAG + self.path.suffix,
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self._out = av.open(str(self.tmp), mode="w", format=container_format(self.path))
            s = self._out.add_stream(codec, rate=info.fps)
            s.width, s.height = info.width, info.height
            s.pix_fmt = pix_fmt or ("yuv420p" if info.width % 2 == 0 and info.height % 2 == 0 else "yuv444p")
            if info.time_base:
                s.time_base = info.time_base
                s.codec_context.time_base = info.time_base
            if codec in ("libx264", "libx264rgb"):
                s.options = {"crf": str(crf), "preset": "medium"}
            self.stream = s
        except Exception as e:
            self.abort()
            if isinstance(e, ExemplarColorError):
                raise
            raise VideoError(self.path, f"cannot be written ({error_reason(e)})") from None
        self._next_pts = 0

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        av = require_av()
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts = self._next_pts if pts is None else pts
        vf.time_base = self.stream.codec_context.time_base
        self._next_pts = vf.pts + 1
        for packet in self.stream.encode(vf):
            self._out.mux(packet)

    def commit(self) -> Path:
        for packet in self.stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        publish_mode(self.tmp)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._out.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def container_format(path: Path) -> str | None:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
            ".ts": "mpegts"}.get(path.suffix.lower())


def publish_mode(path: Path, mode: int = 0o666) -> None:
    """mkstemp/mkdtemp make private files; a result gets the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)
