"""IVF indexes whose inverted lists stay on disk, for galleries larger than RAM (``index build --on-disk``).

FAISS's ``OnDiskInvertedLists`` keep the vectors (or PQ codes) in one ``.ivfdata`` file that is memory-mapped at
search time: RAM holds the coarse centroids and the pages of the lists a query probes. The build never holds
the gallery either: the coarse quantiser is trained on a random sample of the store's rows, each store shard is
added to its own copy of the trained index (written to disk), and FAISS merges those lists into the
``.ivfdata`` file (``faiss.contrib.ondisk.merge_ondisk``). Row ``i`` of the store is FAISS id ``i``, as for
every kind.

The index file names its ``.ivfdata`` by file name only; it is read with ``IO_FLAG_ONDISK_SAME_DIR``, so an index
folder can be moved or copied whole. The lists are written once: ``index add`` refuses an on-disk index (rebuild
it with the new photos), so that nothing is ever half-updated in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from ..errors import UsageError
from .index import IndexSpec, faiss_stdout_silenced, set_search_params

__all__ = ["IVFDATA_SUFFIX", "build_ondisk", "check_ondisk_kind", "is_ondisk"]

IVFDATA_SUFFIX = ".ivfdata"


def _faiss():
    import faiss

    return faiss


def check_ondisk_kind(spec: IndexSpec) -> None:
    """On-disk lists exist for IVF indexes only (``ivf``, ``ivfpq``, or an ``IVF...`` factory string)."""
    if "IVF" not in spec.factory:
        raise UsageError(f"--on-disk keeps an IVF index's inverted lists on disk; --kind {spec.kind} "
                         f"({spec.factory}) has none: use --kind ivf or ivfpq")


def _rows_of(shards: Sequence[Path]) -> list[int]:
    counts = []
    for s in shards:
        with h5py.File(s, "r") as f:
            counts.append(len(f["path"]))
    return counts


def _sample(shards: Sequence[Path], counts: list[int], size: int, seed: int) -> np.ndarray:
    """A random sample of at most ``size`` global descriptors, read shard by shard (never the whole store)."""
    total = sum(counts)
    picked = np.arange(total) if total <= size else np.sort(np.random.default_rng(seed).choice(total, size, False))
    parts, start = [], 0
    for s, n in zip(shards, counts):
        mine = picked[(picked >= start) & (picked < start + n)] - start
        if len(mine):
            with h5py.File(s, "r") as f:
                parts.append(f["global"][mine])
        start += n
    return np.ascontiguousarray(np.concatenate(parts), np.float32)


def build_ondisk(spec: IndexSpec, shards: Sequence[str | os.PathLike], ivfdata: str | os.PathLike,
                 work: str | os.PathLike, *, train_size: int = 200_000, seed: int = 0,
                 kmeans_iters: int = 10) -> Any:
    """The IVF index of the store ``shards`` (their ``global`` rows, in order), its lists in ``ivfdata``.

    ``work`` holds one temporary index per shard (removed at the end). The caller writes the returned index next
    to ``ivfdata`` (:func:`~.index.save_faiss`): the pair is the index."""
    faiss = _faiss()
    check_ondisk_kind(spec)
    shards = [Path(s) for s in shards]
    counts = _rows_of(shards)
    sample = _sample(shards, counts, train_size, seed)
    trained = faiss.index_factory(sample.shape[1], spec.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(trained)
    ivf.cp.niter = kmeans_iters
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    trained.train(sample)
    del sample
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    parts, start = [], 0
    for i, (s, n) in enumerate(zip(shards, counts)):
        if n:
            part = faiss.clone_index(trained)
            with h5py.File(s, "r") as f:
                part.add_with_ids(np.ascontiguousarray(f["global"][...], np.float32),
                                  np.arange(start, start + n, dtype=np.int64))
            parts.append(str(work / f"lists-{i:06d}.faiss"))
            faiss.write_index(part, parts[-1])
            del part
        start += n
    from faiss.contrib.ondisk import merge_ondisk

    Path(ivfdata).unlink(missing_ok=True)  # a merge interrupted before: start its lists again
    with faiss_stdout_silenced():
        merge_ondisk(trained, parts, str(ivfdata))
    for p in parts:
        Path(p).unlink(missing_ok=True)
    set_search_params(trained, spec.params)
    return trained


def is_ondisk(index: Any) -> bool:
    """Whether an index keeps its inverted lists on disk."""
    faiss = _faiss()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
