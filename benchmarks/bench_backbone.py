"""VGG-19 floor and its variants: fp32 NCHW (the floor), channels_last, bfloat16 (and float16 on CUDA).

Answers "does channels_last or reduced precision make the backbone faster here?" on the machine it runs
on; the backbone keeps fp32 NCHW unless these figures say otherwise.

    python benchmarks/bench_backbone.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

from typing import Any

import torch

from common import bench_main, vgg_floor


def run(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Seconds of the five-level forward of one 256x256 pair for each layout/precision (and a bigger batch)."""
    repeats = 3 if quick else 10
    variants: dict[str, dict[str, Any]] = {
        "fp32": dict(dtype=torch.float32),
        "fp32_channels_last": dict(dtype=torch.float32, channels_last=True),
        "bf16": dict(dtype=torch.bfloat16),
        "bf16_channels_last": dict(dtype=torch.bfloat16, channels_last=True),
    }
    if torch.device(device).type == "cuda":
        variants["fp16"] = dict(dtype=torch.float16)
        variants["fp16_channels_last"] = dict(dtype=torch.float16, channels_last=True)
    out: dict[str, Any] = {"size": 256, "pairs": 1, "repeats": repeats}
    for name, kw in variants.items():
        out[f"{name}_s"] = vgg_floor(device, 256, 1, repeats=repeats, **kw)
    for name in variants:
        if name != "fp32":
            out[f"{name}_speedup"] = out["fp32_s"] / out[f"{name}_s"]
    if not quick:  # throughput at a batch of 4 pairs: per-pair cost falls when the batch fills the device
        out["fp32_4pairs_s"] = vgg_floor(device, 256, 4, repeats=max(3, repeats // 2))
        out["fp32_4pairs_per_pair_s"] = out["fp32_4pairs_s"] / 4
    return out


def main() -> None:
    bench_main(run, __doc__)


if __name__ == "__main__":
    main()
