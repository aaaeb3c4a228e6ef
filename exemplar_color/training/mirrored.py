"""The mirrored targets' own VGG-19 features, stored beside a pair cache so that records can be mirrored exactly.

``DIR/mirrored-00000.h5`` ... hold, row for row beside shard ``i``, the cache's feature levels computed on the
target mirrored left-right (``mirror_feat_relu5_1`` ...). VGG-19 is not mirror-symmetric: flipped feature maps
agree with the mirrored photo's features only to a mean cosine of 0.66-0.79 at relu3_1...relu5_1, so a mirrored
record (maps flipped, features swapped: :func:`~exemplar_color.training.augment.mirror`) needs these. One
backbone pass per target and no matching; written per shard, atomically, resumable like the shards.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch

from ..artifacts import ShardPlan
from ..backbone.spec import LEVEL_CHANNELS, LEVEL_STRIDE
from ..color import rgb_to_lab
from ..io import atomic_write
from .cache import FEATURE_PREFIX, MIRROR_PREFIX
from .images import load_square
from .pairs import PairManifest

__all__ = ["companions", "build_mirrored"]


def companions(shards: ShardPlan) -> ShardPlan:
    """The companion files of a cache's shards: file ``i`` holds the mirrored target features of shard ``i``."""
    return ShardPlan(shards.folder, shards.count, shards.part_size, "mirrored-{:05d}.h5", shards.plan,
                     shards.part_key, shards.rank, shards.world)


def _write(matcher: Any, manifest: PairManifest, shard: Path, out: Path, stamp: dict[str, Any], size: int,
           features: Sequence[str], batch_size: int, device: torch.device, bar: Any) -> None:
    """The features of every target of ``shard``, mirrored left-right, written row for row to ``out``."""
    with h5py.File(shard, "r") as f:
        index = f["pair_index"][:].tolist()
    rows: dict[str, list[np.ndarray]] = {lv: [] for lv in features}
    for b in range(0, len(index), batch_size):
        tgts = [load_square(manifest.path(manifest.pairs[i].target), size)[0] for i in index[b:b + batch_size]]
        lightness = rgb_to_lab(torch.stack(tgts).flip(-1).to(device))[:, :1]
        with torch.inference_mode():
            feats = matcher.features(lightness)
        for lv in features:
            rows[lv].extend(feats[lv].float().cpu().numpy().astype(np.float16))
        bar.update(len(tgts))
    with atomic_write(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for lv in features:
                shape = (len(index), LEVEL_CHANNELS[lv], size // LEVEL_STRIDE[lv], size // LEVEL_STRIDE[lv])
                data = np.stack(rows[lv]) if index else np.zeros(shape, np.float16)
                f.create_dataset(MIRROR_PREFIX + FEATURE_PREFIX + lv, data=data,
                                 chunks=(1, *shape[1:]) if index else None)
            f.create_dataset("pair_index", data=np.asarray(index, dtype=np.int64))
            f.attrs.update(stamp)


def build_mirrored(matcher: Any, manifest: PairManifest, shards: ShardPlan, size: int, features: Sequence[str],
                   batch_size: int, device: torch.device, progress: bool = True) -> None:
    """Write the companion of every shard of this rank that lacks one (the shards must be built)."""
    from tqdm import tqdm

    files = companions(shards)
    todo = files.todo()
    with tqdm(total=sum(len(shards.items(i)) for i in todo), unit="target", disable=not progress, file=sys.stderr,
              desc="mirrored features") as bar:
        for i in todo:
            _write(matcher, manifest, shards.path(i), files.path(i), files.stamp(i), size, features, batch_size,
                   device, bar)
