"""The cost of one training step of the hypercolumn sub-net for each trunk shape (width x residual blocks),
from cached inputs (the frozen VGG-19 features come from the pair cache): forward, the class-rebalanced
cross-entropy and the gate's chrominance loss, backward, Adam update; a batch of 16 pairs at 128 px.

The floor is the VGG-19 forward of the same 16 targets at 128 px: what each step would also pay if it computed
the target features instead of reading them from the cache. ``--cpu-time``: this process's CPU seconds at one
thread (neighbour processes do not move the figures). The held-out error each shape reaches is in
docs/training.md (the shape comparison of issue 24).

    python benchmarks/bench_train_shapes.py [--quick] [--device cpu|cuda] [--cpu-time]
"""

from __future__ import annotations

from typing import Any

import torch

import common
from common import timeit, vgg_floor

SHAPES = ((64, 2), (128, 4), (192, 6))  # (width, residual blocks); (128, 4) is the shipped model's
FEATURES = {"relu5_1": (512, 16), "relu4_1": (512, 8), "relu3_1": (256, 4)}  # channels, stride


def batch(n: int, size: int, device: str) -> dict[str, torch.Tensor]:
    """A decoded cache batch of random values with the real shapes."""
    g = torch.Generator().manual_seed(0)
    x = {"l": torch.rand(n, 1, size, size, generator=g) * 100,
         "ab": torch.randn(n, 2, size, size, generator=g) * 20,
         "warped_ab": torch.randn(n, 2, size, size, generator=g) * 20,
         "cycle_ab": torch.randn(n, 2, size, size, generator=g) * 20,
         "similarity": torch.rand(n, 10, size, size, generator=g)}
    for level, (c, s) in FEATURES.items():
        f = torch.rand(n, c, size // s, size // s, generator=g)
        x[f"feat_{level}"] = f / f.norm(dim=1, keepdim=True)
    return {k: v.to(device) for k, v in x.items()}


def step_seconds(width: int, depth: int, x: dict[str, torch.Tensor], repeats: int, device: str) -> tuple[float, int]:
    from exemplar_color.colorization.hypercolumn import HypercolumnConfig, HypercolumnNet
    from exemplar_color.training.distribution import hypercolumn_loss

    net = HypercolumnNet(HypercolumnConfig(width=width, depth=depth)).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    weights = torch.ones(net.config.bins, device=device)

    def step() -> None:
        loss = hypercolumn_loss(net, net, x, weights)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timeit(step, repeats=repeats, device=device), sum(p.numel() for p in net.parameters())


def run(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    n, size, repeats = (4, 64, 2) if quick else (16, 128, 5)
    x = batch(n, size, device)
    floor = vgg_floor(device, size, pairs=n // 2, repeats=repeats)  # n images = n / 2 "pairs" of the floor
    shapes = {}
    for width, depth in SHAPES:
        seconds, params = step_seconds(width, depth, x, repeats, device)
        shapes[f"w{width}-d{depth}"] = {"step_s": round(seconds, 4), "x_floor": round(seconds / floor, 3),
                                        "parameters": params}
    return {"batch": n, "size": size, "floor": "VGG-19 forward (relu1_1..relu5_1) of the batch's targets",
            "floor_s": round(floor, 4), "shapes": shapes}


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, smaller sizes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds at 1 thread (a shared machine)")
    a = ap.parse_args()
    if a.cpu_time:
        common.use_cpu_time()
    result = run(a.quick, a.device)
    result["clock"] = "cpu seconds, 1 thread" if a.cpu_time else f"wall seconds, {torch.get_num_threads()} threads"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
