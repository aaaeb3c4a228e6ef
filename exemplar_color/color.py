"""sRGB <-> CIE Lab (D65, 2 degree observer) in torch.

Same constants and branches as ``skimage.color.rgb2lab`` / ``lab2rgb``, so results agree with
scikit-image, but batched, on any device and differentiable. Channels are on dim -3:
``(..., 3, H, W)``. RGB is sRGB in [0, 1]; L is in [0, 100], a and b roughly in [-128, 127].
:func:`lab_to_image` is the one way a Lab result becomes an 8-bit picture (gamut-safe, keeps L).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["rgb_to_lab", "lab_to_rgb", "rgb_to_gray_lab_l", "gray_to_l", "l_to_gray", "lab_to_rgb8", "lab_to_image",
           "is_gray_lab"]

_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPS = 1e-12


def _check(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (..., 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _matrix(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    return m.to(device=x.device, dtype=x.dtype)


def _apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _linearize(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB companding undone: stored value -> linear light."""
    return torch.where(srgb > 0.04045, ((srgb.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4), srgb / 12.92)


def _compand(linear: torch.Tensor) -> torch.Tensor:
    """Linear light -> stored sRGB value."""
    return torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055,
                       12.92 * linear)


def _f(t: torch.Tensor) -> torch.Tensor:
    """CIE Lab's cube-root response (linear near black)."""
    return torch.where(t > 0.008856, t.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * t + 16.0 / 116.0)


def _f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f.pow(3), (f - 16.0 / 116.0) / 7.787)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB in [0, 1] to CIE Lab (D65).

    Args:
        rgb: ``(..., 3, H, W)`` float tensor, sRGB in [0, 1].

    Returns:
        ``(..., 3, H, W)`` tensor: L in [0, 100], a, b in about [-128, 127].

    Example:
        >>> lab = rgb_to_lab(torch.ones(1, 3, 2, 2))
        >>> round(lab[0, 0, 0, 0].item(), 3)
        100.0
    """
    _check(rgb, "rgb")
    xyz = _apply(_matrix(rgb, inverse=False), _linearize(rgb))
    white = torch.tensor(_WHITE_D65, device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    fx, fy, fz = _f(xyz / white).unbind(-3)
    lightness = 116.0 * fy - 16.0
    return torch.stack((lightness, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Convert CIE Lab (D65) to sRGB; out-of-gamut values are clipped to [0, 1] unless ``clip=False``.

    Args:
        lab: ``(..., 3, H, W)`` float tensor, L in [0, 100].
        clip: clamp the result to [0, 1] as scikit-image does.
    """
    _check(lab, "lab")
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)
    t = _f_inverse(torch.stack((fx, fy, fz), dim=-3))
    white = torch.tensor(_WHITE_D65, device=lab.device, dtype=lab.dtype).view(3, 1, 1)
    rgb = _compand(_apply(_matrix(lab, inverse=True), t * white))
    return rgb.clamp(0.0, 1.0) if clip else rgb


def rgb_to_gray_lab_l(rgb: torch.Tensor) -> torch.Tensor:
    """Lab lightness L of an sRGB image, ``(..., 1, H, W)`` in [0, 100]."""
    return rgb_to_lab(rgb)[..., :1, :, :]


def gray_to_l(gray: torch.Tensor) -> torch.Tensor:
    """Lab lightness of a neutral sRGB gray ``(..., 1, H, W)`` in [0, 1]: what :func:`rgb_to_lab` gives for
    ``gray`` repeated to three channels, at a third of the cost (a gray's Y is its linearised value)."""
    return 116.0 * _f(_linearize(gray)) - 16.0


def l_to_gray(lightness: torch.Tensor) -> torch.Tensor:
    """The neutral sRGB gray ``(..., 1, H, W)`` in [0, 1] whose Lab lightness is ``lightness``.

    This is how a luminance channel is shown to VGG-19: the gray photo a camera would have stored.
    """
    return _compand(_f_inverse((lightness + 16.0) / 116.0)).clamp(0.0, 1.0)


def lab_to_rgb8(l: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """L ``(1, 1, h, w)`` and ab ``(1, 2, h, w)`` -> ``(h, w, 3)`` uint8 sRGB. Out-of-gamut colours lose chroma,
    not lightness, so the picture keeps the input's L (up to 8-bit rounding). Pixel by pixel: any split of an
    image into row bands gives the same picture."""
    lab = torch.cat([l, ab], 1).float()
    rgb = lab_to_rgb(lab, clip=False)
    outside = ((rgb < -1e-3) | (rgb > 1 + 1e-3)).any(1)[0]
    if outside.any():  # shrink chroma by 15% steps (at most 7) on the out-of-gamut pixels only
        px = lab[0][:, outside].T.reshape(-1, 3, 1, 1).clone()
        fix = lab_to_rgb(px, clip=False)
        todo = torch.arange(len(px), device=px.device)
        for _ in range(7):
            todo = todo[((fix[todo] < -1e-3) | (fix[todo] > 1 + 1e-3)).flatten(1).any(1)]
            if not len(todo):
                break
            px[todo, 1:] *= 0.85
            fix[todo] = lab_to_rgb(px[todo], clip=False)  # only the pixels still outside
        rgb[0][:, outside] = fix.reshape(-1, 3).T
    rgb = rgb.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return (rgb * 255 + 0.5).astype(np.uint8)


def lab_to_image(l: torch.Tensor, ab: torch.Tensor, chunk_rows: int = 256) -> Image.Image:
    """L ``(1, 1, H, W)`` and ab ``(1, 2, H, W)`` -> an 8-bit RGB picture (:func:`lab_to_rgb8`), in row chunks
    written straight into the picture (bounded memory at any size)."""
    h, w = l.shape[-2:]
    out = Image.new("RGB", (w, h))
    for r0 in range(0, h, chunk_rows):
        rows = slice(r0, r0 + chunk_rows)
        out.paste(Image.fromarray(lab_to_rgb8(l[..., rows, :], ab[..., rows, :])), (0, r0))
    return out


def is_gray_lab(lab: torch.Tensor, tolerance: float = 2.0) -> bool:
    """True when a Lab image ``(1, 3, H, W)`` has no colour: 99% of its pixels within ``tolerance`` of gray
    (|ab|), so JPEG noise and a faint cast do not count as colour."""
    return bool(torch.quantile(lab[:, 1:].float().norm(dim=1).flatten(), 0.99) < tolerance)
