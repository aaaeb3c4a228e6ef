"""Image layouts in one place: numpy images are channels last, ``(H, W)`` or ``(H, W, C)`` (as
:func:`~exemplar_color.io.load_image` gives them); torch images are channels first, ``(N, C, H, W)`` (as
:mod:`~exemplar_color.color` and the networks take them). Every conversion between the two goes through
here."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = ["ImageLike", "to_tensor", "tensor_view", "to_array", "as_batch"]

ImageLike = Union[np.ndarray, torch.Tensor]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` float array in [0, 1] -> ``(1, C, H, W)`` float32 tensor."""
    arr = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).unsqueeze(0).float()


def tensor_view(image: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` float32 array -> ``(1, C, H, W)`` tensor sharing its memory (channels-last
    strides): a big photo is not copied (:func:`to_tensor` copies, 12 more bytes per pixel for RGB)."""
    arr = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def to_array(x: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` tensor -> ``(H, W, C)`` float32 array (``(H, W)`` for one channel)."""
    a = (x[0] if x.dim() == 4 else x).detach().float().cpu().numpy().transpose(1, 2, 0)
    return a[..., 0] if a.shape[-1] == 1 else a


def as_batch(x: ImageLike, name: str = "image", dtype: torch.dtype | None = torch.float64,
             gray: bool = False) -> tuple[torch.Tensor, bool]:
    """``x`` as an ``(N, C, H, W)`` tensor (``C`` 3, or 1 too with ``gray``) and whether it was batched.

    numpy arrays are channels last, tensors channels first; uint8 is scaled by 1/255 (so a PNG read
    elsewhere still works). ``dtype=None`` keeps a floating input's dtype (uint8 becomes float32).
    """
    ok = (1, 3) if gray else (3,)
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    if isinstance(x, np.ndarray):
        arr = x.astype(np.float64 if wide == torch.float64 else np.float32) / 255.0 if x.dtype == np.uint8 else x
        arr = arr[..., None] if gray and arr.ndim == 2 else arr
        if arr.ndim not in (3, 4) or arr.shape[-1] not in ok:
            raise ValueError(f"{name}: numpy images must be (H, W, 3) or (N, H, W, 3)"
                             f"{', or gray (H, W)' if gray else ''}, got {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(arr)).movedim(-1, -3)
    elif isinstance(x, torch.Tensor):
        t = x.to(wide) / 255.0 if x.dtype == torch.uint8 else x
        t = t[None] if gray and t.dim() == 2 else t
        if t.dim() not in (3, 4) or t.shape[-3] not in ok:
            raise ValueError(f"{name}: tensors must be (3, H, W) or (N, 3, H, W)"
                             f"{', or gray (H, W)' if gray else ''}, got {tuple(x.shape)}")
    else:
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    batched = t.dim() == 4
    t = t if batched else t.unsqueeze(0)
    if dtype is not None:
        return t.to(dtype), batched
    return (t if t.is_floating_point() else t.float()), batched
