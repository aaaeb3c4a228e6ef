"""One training step of the colorization sub-net (both branches: chrominance + perceptual at relu5_1), from
cached inputs: forward, losses, backward, Adam update. Random weights (timing does not depend on them).

    python benchmarks/bench_training.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

from typing import Any

import torch

from common import bench_main, timeit


def run(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    from exemplar_color.backbone import VGG19Features
    from exemplar_color.colorization.network import ColorizationNet, ColorizationNetConfig, make_input
    from exemplar_color.training.losses import PerceptualLoss, chrominance_loss

    cuda = torch.device(device).type == "cuda"
    size, batch, width = (256, 32, 1.0) if cuda else ((64, 4, 0.25) if quick else (128, 8, 0.25))
    net = ColorizationNet(ColorizationNetConfig(width=width, size=size)).to(device).train()
    perceptual = PerceptualLoss(VGG19Features(["relu5_1"], weights="random", variant="torchvision").to(device))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    l = torch.rand(batch, 1, size, size, device=device) * 100
    ab = torch.randn(batch, 2, size, size, device=device) * 20
    sim = torch.rand(batch, 10, size, size, device=device)
    half = batch // 2

    def step() -> None:
        pred = net(make_input(l, ab, sim))
        loss = chrominance_loss(pred[:half], ab[:half]) + 0.005 * perceptual(l[half:], pred[half:], ab[half:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timeit(step, repeats=2 if quick else 5, device=device)
    return {"size": size, "batch": batch, "width": width, "step_s": seconds, "pairs_per_s": batch / seconds}


def main() -> None:
    bench_main(run, __doc__)


if __name__ == "__main__":
    main()
