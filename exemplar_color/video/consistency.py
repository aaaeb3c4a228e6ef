"""Temporal consistency as video colorization papers measure it: the warping error (Lai et al., ECCV 2018).

:func:`exemplar_color.metrics.flicker` counts every change of the error between frames, so colours that are
wrong but steady also count wherever the scene moves under them. The warping error follows the motion instead:
each output frame against the previous one moved along the *truth's* optical flow, over the pixels that flow
explains (a forward-backward check: occlusions and new content left out). The truth's own warping error is the
floor (resampling and flow error): a clip at that figure does not flicker.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..color import rgb_to_lab
from ..layout import ImageLike, as_batch
from .motion import DEFAULT_FLOW, ROUND_TRIP_PX, flow_confidence, optical_flow, warp

__all__ = ["warping_error"]


def warping_error(frames: Sequence[ImageLike], truth: Sequence[ImageLike], flow: str = DEFAULT_FLOW,
                  sure: float = 0.5) -> float:
    """Mean over frame steps of ``sum M |ab_t - W(ab_t-1)| / sum M`` (CIE ab, Euclidean), ``W`` the move along
    the truth's flow and ``M`` the pixels where that flow is at least ``sure`` (:func:`~.motion.
    flow_confidence`). Frames: RGB, as :func:`exemplar_color.metrics.psnr`."""
    if len(frames) != len(truth) or len(frames) < 2:
        raise ValueError(f"the warping error needs two or more frames and as many truth frames, got {len(frames)} "
                         f"and {len(truth)}")
    lab_true = [rgb_to_lab(as_batch(t, dtype=torch.float32)[0]) for t in truth]
    ab_out = [rgb_to_lab(as_batch(f, dtype=torch.float32)[0])[:, 1:] for f in frames]
    steps = []
    for t in range(1, len(frames)):
        cur, prev = lab_true[t][:, :1], lab_true[t - 1][:, :1]
        fwd, bwd = optical_flow(cur, prev, flow), optical_flow(prev, cur, flow)
        mask = (flow_confidence(cur, prev, fwd, bwd, sigma_px=ROUND_TRIP_PX[flow]) >= sure).float()
        diff = (ab_out[t] - warp(ab_out[t - 1], fwd, mode="bilinear")).pow(2).sum(1, keepdim=True).sqrt()
        steps.append(float((diff * mask).sum() / mask.sum().clamp_min(1.0)))
    return sum(steps) / len(steps)
