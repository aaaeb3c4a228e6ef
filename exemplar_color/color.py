"""sRGB <-> CIE Lab (D65, 2 degree observer) in torch.

Same constants and branches as ``skimage.color.rgb2lab`` / ``lab2rgb``, so results agree with
scikit-image, but batched, on any device and differentiable. Channels are on dim -3:
``(..., 3, H, W)``. RGB is sRGB in [0, 1]; L is in [0, 100], a and b roughly in [-128, 127].
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "rgb_to_gray_lab_l", "l_to_gray"]

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
    linear = torch.where(
        rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4), rgb / 12.92
    )
    xyz = _apply(_matrix(rgb, inverse=False), linear)
    white = torch.tensor(_WHITE_D65, device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > 0.008856, t.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
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
    f = torch.stack((fx, fy, fz), dim=-3)
    t = torch.where(f > 0.2068966, f.pow(3), (f - 16.0 / 116.0) / 7.787)
    white = torch.tensor(_WHITE_D65, device=lab.device, dtype=lab.dtype).view(3, 1, 1)
    linear = _apply(_matrix(lab, inverse=True), t * white)
    rgb = torch.where(
        linear > 0.0031308,
        1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055,
        12.92 * linear,
    )
    return rgb.clamp(0.0, 1.0) if clip else rgb


def rgb_to_gray_lab_l(rgb: torch.Tensor) -> torch.Tensor:
    """Lab lightness L of an sRGB image, ``(..., 1, H, W)`` in [0, 100]."""
    return rgb_to_lab(rgb)[..., :1, :, :]


def gray_to_l(gray: torch.Tensor) -> torch.Tensor:
    """Lab lightness of a neutral sRGB gray ``(..., 1, H, W)`` in [0, 1]: what :func:`rgb_to_lab` gives for
    ``gray`` repeated to three channels, at a third of the cost (a gray's Y is its linearised value)."""
    y = torch.where(gray > 0.04045, ((gray.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4), gray / 12.92)
    f = torch.where(y > 0.008856, y.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    return 116.0 * f - 16.0


def l_to_gray(lightness: torch.Tensor) -> torch.Tensor:
    """The neutral sRGB gray ``(..., 1, H, W)`` in [0, 1] whose Lab lightness is ``lightness``.

    This is how a luminance channel is shown to VGG-19: the gray photo a camera would have stored.
    """
    fy = (lightness + 16.0) / 116.0
    y = torch.where(fy > 0.2068966, fy.pow(3), (fy - 16.0 / 116.0) / 7.787)
    gray = torch.where(y > 0.0031308, 1.055 * y.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055, 12.92 * y)
    return gray.clamp(0.0, 1.0)
