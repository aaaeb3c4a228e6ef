"""Robust image loading and atomic, lossless saving.

``load_image`` accepts whatever a user will throw at it (JPEG, PNG 8/16-bit, TIFF, WebP, palette, RGBA,
CMYK, grayscale, EXIF-rotated) and returns a float32 array in [0, 1]: ``(H, W, 3)`` sRGB or ``(H, W)`` gray.
Transparent pixels are composited on white by default (``alpha="white"``), because scanned or exported
photos with an alpha channel are meant to be seen on paper; ``alpha="drop"`` ignores alpha instead.
Every failure is an :class:`~exemplar_color.errors.ImageError` subclass naming the file and the problem.
An animated image (first frame used) or an alpha channel (not kept) is said with a ``UserWarning``.

Pixel limit: images above :func:`current_max_pixels` (default :data:`MAX_PIXELS`, 150 megapixels; set with the
``EXEMPLAR_COLOR_MAX_PIXELS`` environment variable, the CLI's ``--max-pixels`` or the ``max_pixels=``
argument) are refused from their header, before decoding. It replaces Pillow's own decompression-bomb
limit (89.5 megapixels), which would otherwise refuse big scans under the project's limit.

Temporary files of :class:`atomic_write` are named ``.NAME.XXXXXXXX.exemplar-tmp.EXT`` beside ``NAME``, so a
killed run's leftovers are recognisable (:func:`temp_leftovers`) and removable.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from io import BytesIO
from pathlib import Path
from typing import Literal, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .constants import MAX_PIXELS, MAX_PIXELS_ENV  # defined torch- and numpy-free: the CLI's --help shows them
from .errors import (
    CorruptImageError,
    ExemplarColorError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from .uris import is_uri, read_uri

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ImageInput",
    "load_image",
    "as_array",
    "save_image",
    "atomic_write",
    "list_images",
    "current_max_pixels",
    "pixel_limit",
    "temp_leftovers",
    "TEMP_TAG",
    "MAX_PIXELS_ENV",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm")
MIN_SIDE = 16  # below this there is nothing for VGG-19 to see
TEMP_TAG = ".exemplar-tmp"  # in the name of every temporary file atomic_write creates
_limit_override: int | None = None


def current_max_pixels() -> int:
    """The pixel limit in force: :func:`pixel_limit`'s, else ``$EXEMPLAR_COLOR_MAX_PIXELS``, else MAX_PIXELS."""
    if _limit_override is not None:
        return _limit_override
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise PixelLimitSettingError(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive number of "
                                     f"pixels; set it to one (e.g. 400000000), or unset it for {MAX_PIXELS:,}")
    return value


class PixelLimitSettingError(ExemplarColorError, ValueError):
    """``$EXEMPLAR_COLOR_MAX_PIXELS`` is not a positive number (an environment problem, no image's fault)."""


class pixel_limit:
    """Context manager: ``with pixel_limit(400_000_000): ...`` raises the limit (``None``: leave it)."""

    def __init__(self, limit: int | None):
        self.limit = limit

    def __enter__(self) -> None:
        global _limit_override
        self.saved = _limit_override
        if self.limit is not None:
            _limit_override = int(self.limit)

    def __exit__(self, *exc: object) -> None:
        global _limit_override
        _limit_override = self.saved

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
Mode = Literal["RGB", "L", "auto"]


def _to_float(img: Image.Image) -> np.ndarray:
    """Pixel values of an RGB/L/I;16/I/F image as float32 in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / top, 0.0, 1.0).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    arr = np.asarray(img, dtype=np.float32)
    arr /= 255.0  # in place: one float copy of a big scan, not two
    return arr


def _normalise_mode(img: Image.Image, alpha: str) -> Image.Image:
    """Bring any Pillow mode to RGB, L or a 16-bit gray mode, handling alpha and palettes."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if alpha == "drop":
            return img.convert("RGB" if img.mode.startswith(("RGB", "P")) else "L")
        base = img.convert("RGBA")
        white = Image.new("RGBA", base.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, base)
        return out.convert("RGB" if img.mode.startswith(("RGB", "P")) else "L")
    if img.mode in ("RGB", "L", "I;16", "I;16B", "I;16L", "I", "F"):
        return img
    if img.mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV ...


def _check_size(path: object, size: tuple[int, int], max_pixels: int, min_side: int) -> None:
    w, h = size
    if w == 0 or h == 0:
        raise ImageTooSmallError(path, f"image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLargeError(
            path, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} (raise it with "
                  f"--max-pixels or {MAX_PIXELS_ENV})"
        )
    if min(w, h) < min_side:
        raise ImageTooSmallError(path, f"image is {w}x{h}; the short side must be at least {min_side} px")


def _convert(img: Image.Image, mode: Mode) -> np.ndarray:
    arr = _to_float(img)
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[..., :3]
    if mode == "L" and arr.ndim == 3:
        # Rec. 601 luma, the same weights as Pillow's "L" conversion
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif mode == "RGB" and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_image(
    path: str | os.PathLike,
    mode: Mode = "auto",
    *,
    alpha: Literal["white", "drop"] = "white",
    max_pixels: int | None = None,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """Read an image file as float32 in [0, 1].

    Args:
        path: the file: a local path, or a URI that pyarrow opens (``s3://``, ``gs://``, ``file://``...;
            :mod:`exemplar_color.uris`).
        mode: ``"RGB"`` -> ``(H, W, 3)``; ``"L"`` -> ``(H, W)``; ``"auto"`` keeps gray images gray and
            everything else RGB.
        alpha: ``"white"`` composites transparency on white; ``"drop"`` ignores the alpha channel.
        max_pixels: refuse larger images (decompression-bomb guard) with :class:`ImageTooLargeError`;
            ``None``: :func:`current_max_pixels` (the environment variable, else 150 megapixels).
        min_side: refuse images whose short side is smaller, with :class:`ImageTooSmallError`.

    EXIF orientation is applied, so the array is the photo as the camera meant it.
    """
    p: str | Path
    source: BytesIO | Path
    if is_uri(path):  # read whole through pyarrow.fs (exemplar_color.uris)
        p = str(path)
        source = BytesIO(read_uri(p))
    else:
        p = source = Path(path)
        if not p.exists():
            raise ImageNotFoundError(p, "no such file")
        if not p.is_file():
            raise ImageNotFoundError(p, "not a regular file")
        if p.stat().st_size == 0:
            raise NotAnImageError(p, "file is empty (0 bytes)")
    limit = max_pixels if max_pixels is not None else current_max_pixels()
    pil_limit = Image.MAX_IMAGE_PIXELS
    try:
        # our limit replaces Pillow's (its warning at 89.5 MP, its error at twice that): _check_size refuses
        # from the header, before any decoding, with the project's limit and how to raise it
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                _check_size(p, img.size, limit, min_side)
                frames = getattr(img, "n_frames", 1)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                had_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
                img = _normalise_mode(img, alpha)
                arr = _convert(img, mode)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(p, f"refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise NotAnImageError(p, "not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptImageError(p, f"image data is truncated or corrupt ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit
    if frames > 1:
        warnings.warn(f"{p}: animated image ({frames} frames); only the first frame is used", stacklevel=2)
    if had_alpha:
        how = "ignored" if alpha == "drop" else "composited on white"
        warnings.warn(f"{p}: the alpha channel is not kept (transparent areas {how})", stacklevel=2)
    return arr


def as_array(
    image: ImageInput, mode: Mode = "auto", *, max_pixels: int | None = None, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Any accepted input (path, PIL image, array) as the float32 array ``load_image`` would return.

    Arrays may be uint8 (0..255), uint16 (0..65535) or float (0..1), shaped ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (alpha composited on white).
    """
    if max_pixels is None:
        max_pixels = current_max_pixels()
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, mode, max_pixels=max_pixels, min_side=min_side)
    if isinstance(image, Image.Image):
        _check_size(None, image.size, max_pixels, min_side)
        img = ImageOps.exif_transpose(image) or image
        return _convert(_normalise_mode(img, "white"), mode)
    if isinstance(image, np.ndarray):
        return _array_to_float(image, mode, max_pixels, min_side)
    raise TypeError(f"expected a path, PIL.Image or numpy array, got {type(image).__name__}")


def _array_to_float(arr: np.ndarray, mode: Mode, max_pixels: int, min_side: int) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageError(None, f"array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}")
    _check_size(None, (arr.shape[1], arr.shape[0]), max_pixels, min_side)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ImageError(None, "array contains NaN or infinite values")
    else:
        raise ImageError(None, f"unsupported array dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    out = np.clip(out, 0.0, 1.0)
    if out.ndim == 3 and out.shape[2] == 4:
        a = out[..., 3:]
        out = out[..., :3] * a + (1.0 - a)
    if mode == "L" and out.ndim == 3:
        out = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif mode == "RGB" and out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out, dtype=np.float32)


class atomic_write:
    """Context manager yielding a temporary path beside ``path``; renamed over it only on success.

    Readers never see a half-written file, and a failure leaves nothing behind.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=TEMP_TAG + self.path.suffix,
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result should get the usual mode
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def temp_leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporary files a killed :class:`atomic_write` of ``path`` left beside it (also the older
    ``.NAME.XXXX.tmp.EXT`` naming); removing them is always safe once no writer of ``path`` runs."""
    p = Path(path)
    if not p.parent.is_dir():
        return []
    ends = (TEMP_TAG + p.suffix, ".tmp" + p.suffix)
    return sorted(f for f in p.parent.glob(f".{glob_escape(p.name)}.*") if f.name.endswith(ends) and f.is_file())


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


_LOSSLESS = {".png": {}, ".tif": {"compression": "tiff_deflate"}, ".tiff": {"compression": "tiff_deflate"},
             ".webp": {"lossless": True}, ".bmp": {}}


def save_image(path: str | os.PathLike, image: np.ndarray | Image.Image, *, quality: int = 95) -> Path:
    """Write an image atomically. PNG, TIFF, WebP and BMP are lossless; JPEG uses ``quality``.

    ``image`` is a PIL image or an array as returned by :func:`load_image` (float in [0, 1] or uint8).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _LOSSLESS and ext not in (".jpg", ".jpeg"):
        raise ValueError(f"{p}: unsupported output extension {ext!r}; use .png, .tif, .webp, .bmp or .jpg")
    if isinstance(image, np.ndarray):
        arr = image
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
        image = Image.fromarray(arr)
    options = _LOSSLESS.get(ext, {"quality": quality})
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(ext, ext[1:].upper())
    with atomic_write(p) as tmp:
        image.save(tmp, format=fmt, **options)
    return p


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (by extension), sorted for a deterministic order; hidden files skipped."""
    root = Path(folder)
    it = root.rglob("*") if recursive else root.glob("*")
    return sorted(
        p for p in it
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
