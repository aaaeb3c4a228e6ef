"""Temporal fusion of video colorization: each frame's own colours and the previous output's, moved along
the motion (:mod:`.motion`), weighted per pixel by how sure each is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TemporalState:
    """What the next frame needs from this one: working-size L, the fused ab and its accumulated weight."""

    l: torch.Tensor
    ab: torch.Tensor
    weight: torch.Tensor


def fuse(ab_ref: torch.Tensor, conf_ref: torch.Tensor, ab_prev: torch.Tensor, conf_prev: torch.Tensor,
         weight_prev: torch.Tensor, memory: float = 20.0, floor: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A recursive, per-pixel confidence-weighted mean of the reference colours and the previous output's
    (moved), and its weight: ``w_r = floor + conf_ref``, ``w_p = conf_prev * min(weight_prev, memory)``,
    ``ab = (w_r ab_ref + w_p ab_prev) / (w_r + w_p)``, ``weight = w_r + w_p``.

    The weight accumulates while the motion is sure (a colour seen steadily for many frames is hard to
    move), falls with the motion confidence (occlusion, new content, unsure motion: the reference decides)
    and is capped at ``memory``, so the reference always keeps a share and nothing drifts."""
    w_r = floor + conf_ref
    w_p = conf_prev * weight_prev.clamp(max=memory)
    return (w_r * ab_ref + w_p * ab_prev) / (w_r + w_p), w_r + w_p


def guard(sure: torch.Tensor, pixel_floor: float = 0.5, frame_share: float = 0.5) -> torch.Tensor:
    """The motion confidence ``(B, 1, H, W)`` the fusion may use: zero wherever it is below ``pixel_floor``
    (there the propagated colour is less sure than the frame's own, which wins alone), and zero over a
    whole frame whose motion explains less than ``frame_share`` of it (a missed cut, frames out of order,
    a flash): then the frame is coloured as on its own and the state starts again from it."""
    kept = torch.where(sure >= pixel_floor, sure, torch.zeros_like(sure))
    explained = (sure >= pixel_floor).float().mean(dim=(1, 2, 3), keepdim=True)
    return kept * (explained >= frame_share).float()
