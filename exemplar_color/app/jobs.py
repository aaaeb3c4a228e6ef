"""What the web app keeps between requests: uploaded photos and colorization jobs, each under a random id.

Uploads are written to a private temporary folder under names the server makes up (never a name from the
request) and decoded there with the library's own loader, so the CLI's pixel limit, corrupt-file and
not-an-image checks apply unchanged, one upload at a time and under the app's own, lower pixel limit
(:data:`MAX_UPLOAD_PIXELS`, ``--max-upload-pixels``). Jobs run one at a time on one worker thread (one model in memory; the
web server stays responsive); each has its own random id, so several browser tabs never see each other's
results. Both stores forget their oldest entries past a bound, never a queued or running job nor an upload
such a job still needs.
"""

from __future__ import annotations

import io
import secrets
import tempfile
import threading
import time
import warnings
from collections import Counter, OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from ..constants import MAX_UPLOAD_PIXELS  # the app's own limit, below the CLI's: any web page can make it decode
from ..errors import ImageError, ImageTooLargeError
from ..io import current_max_pixels, load_image


def _check_header(path: Path, name: str, limit: int, option: str) -> None:
    """The upload pixel limit from the header, said with the option that sets it (load_image checks the rest)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Image.DecompressionBombError:
        w, h = 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1, 1  # more than that, Pillow says
    except Exception:  # noqa: BLE001 - not an image, corrupt: load_image says which
        return
    if w * h > limit:
        size = f"{w}x{h} = {w * h:,} pixels" if h > 1 else f"over {w - 1:,} pixels"
        raise ImageTooLargeError(name, f"image is {size}, over the limit of {limit:,} for uploads (start the app "
                                       f"with {option} N to raise it)")

__all__ = ["Upload", "UploadStore", "Job", "Worker", "new_id", "MAX_UPLOAD_PIXELS"]


def new_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Upload:
    """One decoded upload: the server's own file for it, the name the browser gave (shown, never used as a
    path), its size and whether it has colour."""

    id: str
    path: Path
    name: str
    width: int
    height: int
    colour: bool


class _Bounded(OrderedDict):
    """An id -> value map that forgets its oldest entries past ``limit`` (``on_drop`` is told), except
    those ``pinned`` (in use by a queued or running job)."""

    def __init__(self, limit: int, on_drop: Callable[[Any], None] = lambda v: None):
        super().__init__()
        self.limit, self.on_drop = limit, on_drop
        self.lock = threading.Lock()
        self.pinned: Counter[str] = Counter()

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self[key] = value
            for old in [k for k in self if k not in self.pinned][:max(0, len(self) - self.limit)]:
                self.on_drop(self.pop(old))

    def find(self, key: str) -> Any:
        with self.lock:
            return self.get(key)


class UploadStore:
    """Uploaded photos in a private temporary folder, decoded on arrival, one at a time (a decoded photo
    costs up to ~16 bytes a pixel: with ``max_pixels`` this bounds the memory uploads can take)."""

    def __init__(self, limit: int = 64, max_pixels: int = MAX_UPLOAD_PIXELS):
        self._dir = tempfile.TemporaryDirectory(prefix="exemplar-color-app-")
        self.root = Path(self._dir.name)
        self.items = _Bounded(limit, lambda u: u.path.unlink(missing_ok=True))
        self.max_pixels = max_pixels
        self._decoding = threading.Lock()

    def add(self, data: bytes, name: str) -> Upload:
        """Decode ``data``; raises :class:`~exemplar_color.errors.ImageError` naming ``name`` and the problem."""
        uid = new_id()
        path = self.root / f"{uid}.upload"
        path.write_bytes(data)
        limit = min(self.max_pixels, current_max_pixels())
        try:
            with self._decoding, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _check_header(path, name, limit,
                              "--max-upload-pixels" if limit == self.max_pixels else "--max-pixels")
                arr = load_image(path, max_pixels=limit)
                colour = arr.ndim == 3 and float(abs(arr - arr.mean(-1, keepdims=True)).max()) > 2 / 255
                height, width = arr.shape[:2]
                del arr
        except ImageError as e:
            path.unlink(missing_ok=True)
            raise ImageError(name, e.problem) from None
        up = Upload(uid, path, name, width, height, colour)
        self.items.put(uid, up)
        return up

    def get(self, uid: str) -> Upload | None:
        return self.items.find(uid)

    def acquire(self, uids: list[str]) -> list[Upload] | None:
        """The uploads ``uids``, kept (never forgotten) until :meth:`release`; None if one is gone."""
        with self.items.lock:
            found = [self.items.get(u) for u in uids]
            if any(u is None for u in found):
                return None
            self.items.pinned.update(uids)
            return found

    def release(self, uids: list[str]) -> None:
        with self.items.lock:
            self.items.pinned.subtract(uids)
            self.items.pinned += Counter()  # drop the zero counts

    def close(self) -> None:
        self._dir.cleanup()


@dataclass
class Job:
    """A colorization job; ``stage``/``progress`` (0..1) say how far it is, ``outputs`` hold its PNGs."""

    id: str
    references: list[str]
    state: str = "queued"  # queued, running, done, error
    stage: str = "waiting for the worker"
    progress: float = 0.0
    error: str | None = None
    started: float = field(default_factory=time.time)
    width: int = 0
    height: int = 0
    outputs: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "stage": self.stage, "progress": round(self.progress, 3),
                "error": self.error, "seconds": round(time.time() - self.started, 1), "width": self.width,
                "height": self.height, "references": self.references}


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


class Worker:
    """One thread that builds the :class:`~exemplar_color.Colorizer` on first use and runs all model work."""

    def __init__(self, make_colorizer: Callable[[], Any]):
        self._make = make_colorizer
        self._colorizer = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exemplar-color-app")

    def colorizer(self, job: Job | None = None) -> Any:
        if self._colorizer is None:
            if job is not None:
                job.stage, job.progress = "loading the model (first run only)", 0.05
            self._colorizer = self._make()
        return self._colorizer

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
