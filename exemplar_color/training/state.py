"""What a resumed run needs to continue exactly: the data order (:class:`EpochBatches`, a function of seed,
epoch and position only) and the optimizer and RNG states as tensors plus JSON, so that a checkpoint is a
safetensors file and never a pickle."""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import ExemplarColorError

__all__ = ["EpochBatches", "optim_to_tensors", "optim_from_tensors", "rng_state", "set_rng_state"]


# ----------------------------------------------------------------------------- data order


class EpochBatches:
    """Batches of record numbers for one rank: a permutation that depends only on (seed, epoch), cut into
    global batches (the last partial one dropped), each split into contiguous per-rank slices.

    ``start`` skips the first batches, which is how a resumed run continues at its exact data position
    without reading the skipped records.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size < 2 * world:
            raise ValueError(f"batch size {batch_size} is too small for {world} rank(s): each rank needs 2 "
                             f"(one per branch)")
        if n < batch_size:
            raise ExemplarColorError(f"only {n} training records for a batch size of {batch_size}; lower "
                                     f"--batch-size or add pairs")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        per_rank = self.batch_size // self.world
        for b in range(self.start, self.steps_per_epoch):
            chunk = perm[b * self.batch_size:(b + 1) * self.batch_size]
            yield chunk[self.rank * per_rank:(self.rank + 1) * per_rank].tolist()


# ----------------------------------------------------------------------------- state (de)serialisation


def optim_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta_state = {}, {}
    for idx, s in state["state"].items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                meta_state.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": meta_state}


def optim_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, s in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(s)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [py[0], list(py[1]), py[2]]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    v, state, g = meta["python"]
    random.setstate((v, tuple(state), g))
