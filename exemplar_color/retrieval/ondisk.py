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
from typing import Any

import numpy as np

from ..errors import UsageError
from .index import IndexSpec, faiss_stdout_silenced, new_index, set_search_params, training_rows
from .store import FeatureStore

__all__ = ["IVFDATA_SUFFIX", "build_ondisk", "check_ondisk_kind", "is_ondisk"]

IVFDATA_SUFFIX = ".ivfdata"


def check_ondisk_kind(spec: IndexSpec) -> None:
    """On-disk lists exist for IVF indexes only (``ivf``, ``ivfpq``, or an ``IVF...`` factory string)."""
    if "IVF" not in spec.factory:
        raise UsageError(f"--on-disk keeps an IVF index's inverted lists on disk; --kind {spec.kind} "
                         f"({spec.factory}) has none: use --kind ivf or ivfpq")


def build_ondisk(spec: IndexSpec, store: FeatureStore, ivfdata: str | os.PathLike, work: str | os.PathLike, *,
                 train_size: int = 200_000, seed: int = 0) -> Any:
    """The IVF index of the ``store``'s global descriptors (row ``i``: id ``i``), its lists in ``ivfdata``.

    The store is read shard by shard, never whole; ``work`` holds one temporary index per shard (removed at the
    end). The caller writes the returned index next to ``ivfdata`` (:func:`~.index.save_faiss`): the pair is
    the index."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    check_ondisk_kind(spec)
    trained = new_index(spec, store.config.dim)
    trained.train(np.ascontiguousarray(store.rows("global", training_rows(len(store), train_size, seed)),
                                       np.float32))
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for s, (lo, hi) in enumerate(zip(store.offsets[:-1], store.offsets[1:])):
        if hi > lo:
            ids = np.arange(lo, hi, dtype=np.int64)
            part = faiss.clone_index(trained)
            part.add_with_ids(np.ascontiguousarray(store.rows("global", ids), np.float32), ids)
            parts.append(str(work / f"lists-{s:06d}.faiss"))
            faiss.write_index(part, parts[-1])
            del part
    Path(ivfdata).unlink(missing_ok=True)  # a merge interrupted before: start its lists again
    with faiss_stdout_silenced():
        merge_ondisk(trained, parts, str(ivfdata))
    for p in parts:
        Path(p).unlink(missing_ok=True)
    set_search_params(trained, spec.params)
    return trained


def is_ondisk(index: Any) -> bool:
    """Whether an index keeps its inverted lists on disk."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
