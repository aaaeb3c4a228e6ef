"""Choosing the torch device from a user's string (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

from __future__ import annotations

import torch

from .errors import ExemplarColorError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; an unavailable device is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ExemplarColorError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExemplarColorError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev
