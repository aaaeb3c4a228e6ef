"""Held-out validation of a training run: the errors the trainer logs and keeps its best model by."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..color import lab_to_rgb
from ..colorization.hypercolumn import HypercolumnNet
from ..colorization.network import make_input
from ..metrics import colorfulness
from .cache import decode
from .distribution import features_of

__all__ = ["evaluate", "evaluate_hypercolumn", "sweep_readouts"]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Held-out chrominance errors (mean |ab - ground truth|, ab units) with the real reference's R'_ab as
    input (``val_ab_l1``, the real use) and with T'_ab (``val_cycle_l1``), and the same for the inputs alone
    (``val_warped_l1``: the "warped ab alone" baseline; ``val_cycle_input_l1``)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)
    count = 0
    for batch in loader:
        x = decode({k: v.to(device, non_blocking=True) for k, v in batch.items()})
        pred_ref = model(make_input(x["l"], x["warped_ab"], x["similarity"])).float()
        pred_cyc = model(make_input(x["l"], x["cycle_ab"], x["similarity"])).float()
        gt = x["ab"]
        errs = [(p - gt).abs().mean((1, 2, 3)).sum() for p in (pred_ref, pred_cyc, x["warped_ab"], x["cycle_ab"])]
        sums += torch.stack(errs).double().cpu()
        count += gt.shape[0]
    model.train(was_training)
    vals = (sums / max(count, 1)).tolist()
    return dict(zip(("val_ab_l1", "val_cycle_l1", "val_warped_l1", "val_cycle_input_l1"), vals))


def _chroma(ab: torch.Tensor) -> torch.Tensor:
    return ab.float().pow(2).sum(1).sqrt().mean((1, 2))


def _hasler(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Per-image Hasler-Suesstrunk colourfulness of ``L`` with ``ab``."""
    return colorfulness(lab_to_rgb(torch.cat([l.float(), ab.float()], 1)))


@torch.no_grad()
def evaluate_hypercolumn(net: HypercolumnNet, batches: Iterable[dict[str, torch.Tensor]],
                         temperature: float | None = None) -> dict[str, Any]:
    """Held-out mean ``|ab - truth|`` (ab units) with the real reference (``val_ab_l1``), with T'_ab
    (``val_cycle_l1``), with no reference (``val_noref_l1``), of the warped ab alone and of the gray image;
    and the colourfulness of each output relative to the truth's: mean chroma (``val_*_chroma``) and
    Hasler-Suesstrunk's (``val_*_colourfulness``, the figure the quality reports give)."""
    return sweep_readouts(net, batches, [(temperature or net.config.temperature, net.logit_bias,
                                          net.config.gate_power)])[0]


@torch.no_grad()
def sweep_readouts(net: HypercolumnNet, batches: Iterable[dict[str, torch.Tensor]],
                   readouts: Sequence[tuple[float, torch.Tensor, float]]) -> list[dict[str, Any]]:
    """:func:`evaluate_hypercolumn`'s figures for every ``(temperature, logit_bias, gate_power)`` readout of the
    same predictions (the network runs once per batch and condition)."""
    was, kept = net.training, net.logit_bias.clone()
    net.eval()
    sums: list[dict[str, float]] = [{} for _ in readouts]
    count, truth_hasler = 0, 0.0
    for x in batches:
        feats, gt, l = features_of(x), x["ab"].float(), x["l"]
        preds = {"ab": net(l, feats, x["warped_ab"], x["similarity"]), "cycle": net(l, feats, x["cycle_ab"],
                 x["similarity"]), "noref": net(l, feats)}
        fixed = {"warped": x["warped_ab"].float(), "gray": torch.zeros_like(gt)}
        truth_chroma = _chroma(gt).clamp_min(1e-3)
        truth_hasler += float(_hasler(l, gt).sum())
        for acc, (temperature, bias, power) in zip(sums, readouts):
            net.logit_bias.copy_(bias)
            outs = dict(fixed)
            for k, pred in preds.items():
                prior, gate = net.readout(pred, l.shape[-2:], temperature, power)
                ref = {"ab": x["warped_ab"], "cycle": x["cycle_ab"]}.get(k)
                outs[k] = prior if ref is None else gate * ref.float() + (1 - gate) * prior
            for k, v in outs.items():
                acc[f"val_{k}_l1"] = acc.get(f"val_{k}_l1", 0.0) + float((v - gt).abs().mean((1, 2, 3)).sum())
                acc[f"val_{k}_chroma"] = acc.get(f"val_{k}_chroma", 0.0) + float((_chroma(v) / truth_chroma).sum())
                acc[f"val_{k}_colourfulness"] = acc.get(f"val_{k}_colourfulness", 0.0) + float(_hasler(l, v).sum())
        count += gt.shape[0]
    net.logit_bias.copy_(kept)
    net.train(was)
    per_image = {k: max(count, 1) for k in sums[0]}  # sums of per-image figures -> means
    per_image.update({k: max(truth_hasler, 1e-6) for k in sums[0] if k.endswith("_colourfulness")})  # -> ratios
    return [{k: v / per_image[k] for k, v in acc.items() if not k.startswith("val_gray_c")} for acc in sums]
