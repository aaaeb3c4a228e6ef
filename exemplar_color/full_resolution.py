"""The full-resolution stage, a band of rows at a time: the working-size ab are brought to the photo's full
size along its own L (the upsampling the :class:`~exemplar_color.Colorizer` was built with) and recombined
with that L into the 8-bit result.

Why bands: done on the whole image at once, this stage held float32 copies of the full photo's L, ab and Lab
(about 30 bytes per pixel: a 35-megapixel scan needed 1 GB more than a small photo). Band by band, only the
input photo and the 8-bit result grow with the pixel count; each band costs what a half-megapixel photo does.
Every step works row by row (the upsampling reads the working-size grid at each output row's own position, the
Lab conversion is per pixel), so the split into bands does not change the result.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .color import gray_to_l, lab_to_rgb8, rgb_to_lab
from .errors import ExemplarColorError
from .colorization.guided import bilinear_rows, guided_coefficients, guided_rows, joint_bilateral_rows
from .layout import to_array

__all__ = ["FullResolution", "UPSAMPLE_METHODS", "BAND_PIXELS", "ColorizationError"]


class ColorizationError(ExemplarColorError, ValueError):
    """The colours computed for a photo are not usable (NaN or infinite)."""

UPSAMPLE_METHODS = ("joint-bilateral", "bilinear", "guided")
BAND_PIXELS = 1 << 19  # pixels per band: some 90 MB of temporaries at the peak, whatever the photo's size


class FullResolution:
    """Working-size ab brought to a photo's full size, computed a band of rows at a time.

    Args:
        pixels: the input photo ``(1, C, H, W)``, C = 1 (gray) or 3 (sRGB), in [0, 1]; read one band at a time
            (it may stay on the CPU while the work runs on ``ab``'s device).
        tl: the target's L at the working size ``(1, 1, h, w)``, in [0, 100].
        ab: the predicted ab at the working size ``(1, 2, h, w)``, in Lab units.
        method: ``"joint-bilateral"``, ``"bilinear"`` or ``"guided"`` (see :class:`~exemplar_color.Colorizer`).
        band_pixels: about how many pixels one band holds (whole rows, at least one).
    """

    def __init__(self, pixels: torch.Tensor, tl: torch.Tensor, ab: torch.Tensor, method: str = "joint-bilateral",
                 band_pixels: int = BAND_PIXELS):
        if method not in UPSAMPLE_METHODS:
            raise ValueError(f"method must be one of {UPSAMPLE_METHODS}, got {method!r}")
        if not bool(torch.isfinite(ab).all()):  # a damaged model: never pass a black or broken photo as a result
            raise ColorizationError("the colours came out as NaN or infinity (a damaged model or checkpoint?); "
                                    "nothing was written")
        self.pixels, self.ab, self.method, self.band_pixels = pixels, ab, method, band_pixels
        self.guide_low = tl / 100
        self._coeff = guided_coefficients(self.guide_low, ab) if method == "guided" else None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the photo (and of the result)."""
        return tuple(self.pixels.shape[-2:])  # type: ignore[return-value]

    def bands(self) -> Iterator[tuple[int, int]]:
        """``(first row, end row)`` of each band, top to bottom."""
        h, w = self.size
        step = max(1, self.band_pixels // w)
        for r0 in range(0, h, step):
            yield r0, min(h, r0 + step)

    def l_rows(self, r0: int, r1: int) -> torch.Tensor:
        """The photo's own L ``(1, 1, r1 - r0, W)`` in [0, 100]: what the result keeps."""
        px = self.pixels[..., r0:r1, :].to(self.ab.device)
        return gray_to_l(px) if px.shape[1] == 1 else rgb_to_lab(px)[:, :1]

    def ab_rows(self, l_rows: torch.Tensor, r0: int) -> torch.Tensor:
        """Full-size ab ``(1, 2, n, W)`` of the ``n`` rows from ``r0`` whose L is ``l_rows``."""
        h, w = self.size
        if self.method == "joint-bilateral":
            return joint_bilateral_rows(self.guide_low, self.ab, l_rows / 100, r0, h)
        if self.method == "guided":
            return guided_rows(self._coeff, l_rows / 100, r0, h)
        return bilinear_rows(self.ab, r0, r0 + l_rows.shape[-2], h, w)

    def image(self) -> Image.Image:
        """The colorized photo: its own L with the full-size ab, 8-bit RGB, filled band by band."""
        h, w = self.size
        out = Image.new("RGB", (w, h))
        for r0, r1 in self.bands():
            l = self.l_rows(r0, r1)
            out.paste(Image.fromarray(lab_to_rgb8(l, self.ab_rows(l, r0))), (0, r0))
        return out

    def ab_array(self) -> np.ndarray:
        """The full-size ab the picture was made with, ``(H, W, 2)`` float32 (8 bytes per pixel)."""
        h, w = self.size
        out = np.empty((h, w, 2), np.float32)
        for r0, r1 in self.bands():
            out[r0:r1] = to_array(self.ab_rows(self.l_rows(r0, r1), r0))
        return out
