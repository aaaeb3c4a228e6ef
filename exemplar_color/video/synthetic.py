"""Clips with known camera moves, filmed over real colour photos: the truth of every frame is known, and
there is no compression noise, so a colour change between the truth's frames comes from the motion alone.

Used by the temporal tests and ``benchmarks/video_moves.py``. A clip is a list of ``(H, W, 3)`` uint8 RGB
frames; a move is a camera path (centre, zoom, angle per frame) over one photo, optionally with a second
photo's disc moving over it (an independent object) or a cut to another photo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Camera:
    """Where a frame looks: centre ``(x, y)`` as fractions of the photo, ``zoom`` (1: the frame's width
    covers ``cover`` of the photo's width; 2: half that) and ``angle`` in degrees."""

    x: float = 0.5
    y: float = 0.5
    zoom: float = 1.0
    angle: float = 0.0


MOVES: dict[str, Callable[[int], Camera]] = {
    # per-frame steps of the kind real footage has: a slow pan, ~1.2 % zoom a frame, 1.5 degrees a frame
    "pan": lambda t: Camera(x=0.38 + 0.011 * t, y=0.47 + 0.002 * t),
    "zoom_in": lambda t: Camera(zoom=1.012 ** t),
    "zoom_out": lambda t: Camera(zoom=1.3 / 1.012 ** t),
    "rotation": lambda t: Camera(angle=1.5 * t, zoom=1.25),
    "pan_zoom": lambda t: Camera(x=0.42 + 0.006 * t, zoom=1.012 ** t),
}


def film(photo: np.ndarray, cameras: Sequence[Camera], size: tuple[int, int], cover: float = 0.6) -> list[np.ndarray]:
    """Frames ``size`` = (H, W) of ``photo`` ``(h, w, 3)`` uint8 seen through each camera (bilinear,
    after an area reduction of the photo to about the frames' scale, so frames do not alias)."""
    fh, fw = size
    src = torch.from_numpy(np.array(photo, copy=True)).permute(2, 0, 1)[None].float()
    scale = fw / (cover * photo.shape[1])  # photo pixels -> frame pixels at zoom 1
    if scale < 0.8:  # reduce the photo to 1.25x the frame scale first
        src = F.interpolate(src, scale_factor=scale * 1.25, mode="area")
    h, w = src.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(fh, dtype=torch.float64) - (fh - 1) / 2,
                            torch.arange(fw, dtype=torch.float64) - (fw - 1) / 2, indexing="ij")
    frames = []
    for cam in cameras:
        step = cover * w / fw / cam.zoom  # source pixels per frame pixel
        a = math.radians(cam.angle)
        px = cam.x * (w - 1) + step * (math.cos(a) * xs - math.sin(a) * ys)
        py = cam.y * (h - 1) + step * (math.sin(a) * xs + math.cos(a) * ys)
        grid = torch.stack((px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1), -1)[None].float()
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        frames.append(out[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return frames


def paste_moving(frames: list[np.ndarray], object_photo: np.ndarray, radius: float = 0.22,
                 speed: float = 0.025) -> list[np.ndarray]:
    """``frames`` with a disc cut from ``object_photo`` (radius as a fraction of the frame height) moving
    left to right by ``speed`` of the frame width a frame: a subject moving against the background."""
    fh, fw = frames[0].shape[:2]
    r = radius * fh
    obj = film(object_photo, [Camera(zoom=1.6)], (int(2 * r) + 2, int(2 * r) + 2))[0].astype(np.float32)
    oy, ox = np.mgrid[:obj.shape[0], :obj.shape[1]]
    alpha = np.clip(r - np.hypot(ox - (obj.shape[1] - 1) / 2, oy - (obj.shape[0] - 1) / 2), 0, 1)[..., None]
    out = []
    for t, frame in enumerate(frames):
        f = frame.astype(np.float32)
        x0, y0 = int(round(0.1 * fw + speed * fw * t)), int(round(0.5 * fh - r))
        xs, ys = slice(max(x0, 0), min(x0 + obj.shape[1], fw)), slice(max(y0, 0), min(y0 + obj.shape[0], fh))
        o = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        f[ys, xs] = alpha[o] * obj[o] + (1 - alpha[o]) * f[ys, xs]
        out.append(f.round().astype(np.uint8))
    return out


def move_clip(move: str, photo: np.ndarray, frames: int = 16, size: tuple[int, int] = (160, 256),
              other: np.ndarray | None = None) -> list[np.ndarray]:
    """A clip of ``move`` over ``photo``: one of :data:`MOVES`; ``"object"`` (a slow pan with ``other``'s disc
    moving across it); ``"cut"`` (a pan over ``photo``, then a zoom over ``other`` from the middle frame)."""
    if move in MOVES:
        return film(photo, [MOVES[move](t) for t in range(frames)], size)
    if other is None:
        raise ValueError(f"the {move!r} move needs a second photo")
    if move == "object":
        return paste_moving(film(photo, [Camera(x=0.45 + 0.004 * t) for t in range(frames)], size), other)
    if move == "cut":
        half = frames // 2
        return (film(photo, [MOVES["pan"](t) for t in range(half)], size)
                + film(other, [MOVES["zoom_in"](t) for t in range(frames - half)], size))
    raise ValueError(f"unknown move {move!r}; choose from {sorted(MOVES) + ['cut', 'object']}")


ALL_MOVES = (*MOVES, "object", "cut")
