"""Runtime settings in one place: the torch device from a user's string, torchrun's process environment,
and CPU thread counts.

Every part of the library that picks a device or reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` does it here:
the pipeline, the gallery build, the pair cache, training and the command line.

- ``auto`` is CUDA when present, else the CPU; ``cuda`` without an index is this process's GPU: under
  ``torchrun`` (``WORLD_SIZE`` > 1) ``cuda:LOCAL_RANK``, otherwise the current CUDA device. ``cpu``,
  ``cuda:1``, ``mps``, ... are taken as given; an unknown or unavailable device is an
  :class:`~exemplar_color.errors.ExemplarColorError` (one line, exit 1 in the CLI).
- :func:`dist_env` is ``(rank, world, local_rank)``: torchrun's variables, ``(0, 1, 0)`` outside it.
- :func:`native_bfloat16` says whether a device computes bfloat16 natively (the matcher's ``auto`` precision).
- :func:`cache_dir` is where downloaded weights and remembered file hashes live (``$EXEMPLAR_COLOR_HOME``).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from .errors import ExemplarColorError

__all__ = ["DistEnv", "dist_env", "is_main_process", "resolve_device", "set_threads", "cache_dir",
           "native_bfloat16"]


class DistEnv(NamedTuple):
    """This process's place in a ``torchrun`` job."""

    rank: int
    world: int
    local_rank: int


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ExemplarColorError(f"environment variable {name}={value!r} is not a whole number") from None


def dist_env() -> DistEnv:
    """``(rank, world, local_rank)`` from torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; ``(0, 1, 0)``
    when ``WORLD_SIZE`` is unset or 1."""
    world = _int_env("WORLD_SIZE", 1)
    if world <= 1:
        return DistEnv(0, 1, 0)
    rank, local = _int_env("RANK", 0), _int_env("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ExemplarColorError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistEnv(rank, world, local)


def is_main_process() -> bool:
    """Rank 0 (or no torchrun at all): the process that writes results and prints."""
    return dist_env().rank == 0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A torch device from ``auto`` (or None), ``cpu``, ``cuda``, ``cuda:1``, ``mps``, ... (see the module)."""
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip().lower()
    env = dist_env()
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ExemplarColorError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ExemplarColorError(f"device {device!r} asked for, but CUDA is not available on this machine")
        if dev.index is None and env.world > 1:
            dev = torch.device("cuda", env.local_rank)
    return dev


def set_threads(n: int | None, faiss: bool = False) -> None:
    """CPU threads for torch and FAISS's OpenMP (``None`` or 0 leaves the defaults). FAISS is set when
    ``faiss`` is true or when it is already imported; it is never imported for nothing."""
    if not n:
        return
    torch.set_num_threads(int(n))
    if faiss or "faiss" in sys.modules:
        import faiss as _faiss

        _faiss.omp_set_num_threads(int(n))


def native_bfloat16(device: torch.device) -> bool:
    """True where bfloat16 convolutions run natively: a CUDA GPU that supports them, or a CPU with
    AVX512_BF16 or AMX (Linux's ``/proc/cpuinfo``). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cache_dir() -> Path:
    """Where downloaded weights and remembered hashes live: ``$EXEMPLAR_COLOR_HOME`` or
    ``~/.cache/exemplar_color``."""
    return Path(os.environ.get("EXEMPLAR_COLOR_HOME", Path.home() / ".cache" / "exemplar_color"))
