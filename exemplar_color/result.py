"""What a colorization returns: the photo, and how its colours were chosen (confidence, warped colours,
correspondence fields, which reference coloured each pixel). Shared by the single- and several-reference paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import torch
from PIL import Image

from .color import lab_to_image
from .layout import to_tensor

__all__ = ["ColorizationResult", "LABEL_COLOURS"]

# label map colours, one per reference (Okabe-Ito: told apart with any colour vision), cycled past eight
LABEL_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
                 (204, 121, 167), (0, 0, 0)] * 32


Lazy = Union[np.ndarray, Callable[[], np.ndarray]]  # an array, or how to compute it when first asked for


@dataclass
class ColorizationResult:
    """A colorized photo and how it was made.

    ``image``/``ab`` are at the target's original size; ``confidence``, ``warped_ab``, ``similarity`` at the
    working size; ``forward``/``backward`` in original pixel coordinates (see :meth:`Colorizer.match`).
    With several references: ``references`` names them, ``labels`` (working size, uint8) says which one
    coloured each pixel, ``forward`` points into that one, ``backward`` is the first one's.

    The full-size arrays ``ab``, ``forward`` and ``backward`` (8 bytes per pixel each) are computed when first
    read, then kept: a result that is only saved never holds them (a 35-megapixel scan's would take 0.8 GB).
    Until then the result keeps a reference to the input photo's pixels, which ``ab`` is computed from.
    """

    image: Image.Image
    _ab: Lazy = field(repr=False)
    confidence: np.ndarray
    warped_ab: np.ndarray
    similarity: np.ndarray
    _forward: Lazy = field(repr=False)
    _backward: Lazy = field(repr=False)
    reference: str
    head: str
    levels: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    recommendations: list[Any] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # automatic mode: (path, why) before it
    labels: np.ndarray | None = None  # several references: index of the one that coloured each pixel
    references: tuple[str, ...] = ()

    working_l: torch.Tensor | None = field(default=None, repr=False)  # (1, 1, h, w): for warped_image

    def _computed(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        if callable(value):  # computed once, then kept (and the function, with what it held, let go)
            value = value()
            setattr(self, name, value)
        return value

    @property
    def ab(self) -> np.ndarray:
        """Predicted ab ``(H, W, 2)`` float32 at the target's full size, in Lab units (what ``image`` shows)."""
        return self._computed("_ab")

    @property
    def forward(self) -> np.ndarray:
        """``(H_t, W_t, 2)``: each target pixel's match ``(x, y)`` in the reference's original pixels."""
        return self._computed("_forward")

    @property
    def backward(self) -> np.ndarray:
        """``(H_r, W_r, 2)``: each reference pixel's match ``(x, y)`` in the target's original pixels."""
        return self._computed("_backward")

    @property
    def warped_image(self) -> Image.Image:
        """Target L (working size) with the raw warped reference ab: what the match alone gives."""
        return lab_to_image(self.working_l, to_tensor(self.warped_ab))

    def confidence_image(self) -> Image.Image:
        return Image.fromarray((np.clip(self.confidence, 0, 1) * 255).round().astype(np.uint8), "L")

    def label_image(self) -> Image.Image:
        """The label map as a palette PNG: pixel value = reference index (0 = the first), shown in colours."""
        labels = self.labels if self.labels is not None else np.zeros(self.confidence.shape, np.uint8)
        img = Image.fromarray(labels.astype(np.uint8), "P")
        img.putpalette([c for rgb in LABEL_COLOURS for c in rgb])
        return img
