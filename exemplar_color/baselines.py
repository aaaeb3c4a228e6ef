"""Classical baselines an evaluation report compares the learned pipeline against.

:func:`reinhard_transfer` is Reinhard et al.'s (2001) global colour transfer restricted to what
colorization may change: the target's lightness L is kept exactly and only the a, b channels get the
reference's per-channel mean and standard deviation (in CIE Lab, D65, rather than Reinhard's lαβ). For a
gray target (ab = 0 everywhere) this paints the reference's mean colour over the whole image: the
"one global tint" floor that any correspondence-based method has to beat.
"""

from __future__ import annotations

import numpy as np
import torch

from .color import lab_to_rgb, rgb_to_lab
from .layout import ImageLike, as_batch

__all__ = ["reinhard_transfer", "reinhard_transfer_lab"]

def _lab(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:  # a gray image: its value is the sRGB gray, so L from the neutral colour
        x = x.expand(-1, 3, -1, -1)
    return rgb_to_lab(x)


def reinhard_transfer_lab(target: ImageLike, reference: ImageLike, eps: float = 1e-3) -> torch.Tensor:
    """Lab result ``(N, 3, H, W)`` of the transfer: L from ``target`` bit for bit, ab statistics from ``reference``.

    Args:
        target: the image to colour: RGB, or gray (``(H, W)``, ``(H, W, 1)``, ``(1, H, W)``), in [0, 1].
            numpy arrays are channels last, tensors channels first; a leading batch dim is allowed.
        reference: RGB image(s) whose ab mean and standard deviation are imposed (one per target, or one
            for all).
        eps: below this ab standard deviation (Lab units) a target channel is treated as flat (a gray
            target given as RGB), and the result is the reference mean rather than round-off noise
            divided by ~0.
    """
    t, _ = as_batch(target, "target", dtype=None, gray=True)
    r, _ = as_batch(reference, "reference", dtype=None)
    r = r.to(device=t.device, dtype=t.dtype)
    if r.shape[0] not in (1, t.shape[0]):
        raise ValueError(f"{r.shape[0]} references for {t.shape[0]} targets: give one, or one per target")
    lab_t, lab_r = _lab(t), _lab(r)
    ab_t, ab_r = lab_t[:, 1:], lab_r[:, 1:]
    if t.shape[1] == 1:  # gray: ab is 0 by definition, not float round-off to be amplified
        ab_t = torch.zeros_like(ab_t)
    mean_t, std_t = ab_t.mean(dim=(2, 3), keepdim=True), ab_t.std(dim=(2, 3), keepdim=True, unbiased=False)
    mean_r, std_r = ab_r.mean(dim=(2, 3), keepdim=True), ab_r.std(dim=(2, 3), keepdim=True, unbiased=False)
    gain = torch.where(std_t > eps, std_r / std_t.clamp_min(eps), torch.zeros_like(std_t))
    ab = (ab_t - mean_t) * gain + mean_r
    return torch.cat([lab_t[:, :1], ab], dim=1)


def reinhard_transfer(target: ImageLike, reference: ImageLike) -> ImageLike:
    """Reinhard-style colour transfer as an sRGB image in [0, 1], in the layout and type of ``target``.

    numpy in -> float32 ``(H, W, 3)`` (or ``(N, H, W, 3)``) out; tensor in -> ``(3, H, W)`` /
    ``(N, 3, H, W)`` out. Out-of-gamut Lab colours are clipped to sRGB, so L is exact in
    :func:`reinhard_transfer_lab` and only approximately so here.
    """
    lab = reinhard_transfer_lab(target, reference)
    rgb = lab_to_rgb(lab)
    batched = (target.ndim == 4) if isinstance(target, np.ndarray) else (target.dim() == 4)
    if isinstance(target, np.ndarray):
        out = rgb.movedim(1, -1).numpy().astype(np.float32)
        return out if batched else out[0]
    return rgb if batched else rgb[0]
