"""Helpers every benchmark uses: the VGG-19 floor, timing with device sync, peak memory, machine facts, JSON.

The *floor* is the cost no exemplar-based colorization can avoid: one VGG-19 forward pass relu1_1 ..
relu5_1 of the target and its reference. Every benchmark figure is reported as a ratio to the floor
measured in the same run on the same device, so figures from different machines stay comparable.
Timing does not depend on the weights' values, so the floor uses random weights (no download needed).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = [
    "FLOOR_LEVELS",
    "vgg_floor",
    "timeit",
    "timings",
    "sync",
    "reset_peak_memory",
    "peak_memory",
    "machine_info",
    "write_json",
    "now_iso",
]

FLOOR_LEVELS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not only its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter
"""The clock of every timing: wall time, or ``time.process_time`` (``use_cpu_time``)."""


def use_cpu_time() -> None:
    """Time by this process's CPU seconds instead of the wall clock, at one torch thread: immune to neighbour
    processes on a shared machine (they slow the wall clock, not the work done), so ratios taken on a loaded
    machine read like a quiet one's. CPU only."""
    global CLOCK
    torch.set_num_threads(1)
    CLOCK = time.process_time


def timings(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1,
            device: str | torch.device = "cpu") -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (device-synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        sync(device)
        out.append(CLOCK() - t0)
    return out


def timeit(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Median seconds per call of ``fn`` (the median: robust to a neighbour process stealing a core)."""
    return statistics.median(timings(fn, repeats, warmup, device))


def vgg_floor(device: str | torch.device = "cpu", size: int | tuple[int, int] = 256, pairs: int = 1,
              repeats: int = 5, *, warmup: int = 1, dtype: torch.dtype = torch.float32,
              channels_last: bool = False) -> float:
    """Median seconds of the five-level VGG-19 forward (relu1_1..relu5_1) of ``pairs`` target+reference pairs.

    Args:
        size: square side, or ``(H, W)`` (e.g. ``(3000, 4000)`` for a full-resolution photo).
        pairs: pairs per batch (the batch holds ``2 * pairs`` images).
        dtype / channels_last: the variants :mod:`bench_backbone` compares; the floor proper is fp32 NCHW.
    """
    from exemplar_color.backbone import VGG19Features

    h, w = (size, size) if isinstance(size, int) else size
    net = VGG19Features(FLOOR_LEVELS, weights="random", variant="torchvision").to(device=device, dtype=dtype)
    x = torch.rand(2 * pairs, 3, h, w, device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode():
            net(x, channels_last=channels_last)

    return timeit(run, repeats=repeats, warmup=warmup, device=device)


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    """Start a new CUDA peak-memory window (CPU RSS peak cannot be reset: it is per process)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str | torch.device = "cpu") -> int:
    """Peak bytes: CUDA max allocated since the last reset, or this process's peak RSS on CPU.

    The CPU figure is the whole process's high-water mark (Python, torch and everything run so far), so
    run a memory benchmark in its own process when the absolute figure matters.
    """
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, torch threads, versions and the GPU if any."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_bytes=p.total_memory, cuda_version=torch.version.cuda)
    try:
        import exemplar_color

        info["exemplar_color"] = exemplar_color.__version__
    except ImportError:
        pass
    return info


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    """Strict JSON: inf/nan become strings (json.dump would write the non-standard Infinity/NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON, atomically (a crash never leaves half a results file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def bench_main(run: Callable[..., dict[str, Any]], doc: str | None) -> None:
    """The command line every benchmark shares: ``[--quick] [--device D]``, the figures as JSON on stdout."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, smaller sizes")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps(run(args.quick, args.device), indent=2))
