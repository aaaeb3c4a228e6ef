"""First-stage FAISS index over L2-normalised global descriptors, one interface for every kind.

Kinds (inner product = cosine on unit vectors):

``flat``   exact search (default): ``Flat``. Brute force, but BLAS-fast up to a few million entries.
``ivf``    ``IVF{nlist},Flat`` with ``nlist`` ~ 4 sqrt(N) (a power of two) and ``nprobe`` probed lists.
``hnsw``   ``HNSW32,Flat`` graph, ``efSearch`` candidates per query.
``ivfpq``  ``IVF{nlist},PQ{D/8}``: 8 bytes per 64 dims, for galleries that do not fit in memory as floats.

Anything else is taken as a FAISS factory string (e.g. ``"PCA256,IVF4096,Flat"`` or ``"HNSW64,SQ8"``).
Row ``i`` of the store is FAISS id ``i``: vectors are always added in store order.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..io import atomic_write

__all__ = ["IndexSpec", "resolve_kind", "build_faiss", "add_vectors", "set_search_params", "save_faiss",
           "load_faiss", "faiss_stdout_silenced", "new_index", "training_rows", "KINDS"]

KINDS = ("flat", "ivf", "hnsw", "ivfpq")
# defaults for factory strings; the ivf/ivfpq presets use nprobe = nlist/16 (see resolve_kind).
# HNSW efSearch 128: recall@10 0.989 at 1.3 ms per query on 1M 512-d descriptor-like vectors, 1 thread.
DEFAULT_PARAMS = {"flat": {}, "ivf": {"nprobe": 32}, "hnsw": {"efSearch": 128}, "ivfpq": {"nprobe": 32}}


def _faiss():
    import faiss  # lazy: importing FAISS costs ~0.3 s and is optional for descriptor work

    return faiss


@dataclass
class IndexSpec:
    """A FAISS factory string plus the search parameters it is used with."""

    kind: str
    factory: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "factory": self.factory, "params": dict(self.params),
                "metric": "inner_product"}


def _nlist(n: int) -> int:
    """~4 sqrt(N) inverted lists (a power of two), at most N/39 so k-means has 39 points per centroid."""
    if n < 39 * 2:
        return 1
    target = 2 ** round(math.log2(4 * math.sqrt(n)))
    return int(max(1, min(target, 2 ** int(math.log2(n // 39)))))


def resolve_kind(kind: str, dim: int, n: int, params: dict[str, Any] | None = None) -> IndexSpec:
    """Kind name or factory string -> :class:`IndexSpec` sized for ``n`` vectors of dimension ``dim``."""
    k = kind.strip()
    if k.lower() == "flat":
        spec = IndexSpec("flat", "Flat")
    elif k.lower() == "ivf":
        # nprobe = nlist/16: recall@10 0.98 at 1M descriptor-like vectors (benchmarks/bench_retrieval.py)
        spec = IndexSpec("ivf", f"IVF{_nlist(n)},Flat", {"nprobe": max(8, _nlist(n) // 16)})
    elif k.lower() == "hnsw":
        spec = IndexSpec("hnsw", "HNSW32,Flat", dict(DEFAULT_PARAMS["hnsw"]))
    elif k.lower() == "ivfpq":
        m = max(1, dim // 8)
        while dim % m:
            m -= 1
        spec = IndexSpec("ivfpq", f"IVF{_nlist(n)},PQ{m}", {"nprobe": max(8, _nlist(n) // 16)})
    else:
        try:
            _faiss().index_factory(dim, k, _faiss().METRIC_INNER_PRODUCT)
        except Exception as e:  # FAISS raises RuntimeError with a C++ message
            raise UsageError(f"--kind {kind!r} is neither one of {', '.join(KINDS)} nor a valid FAISS factory "
                             f"string for dimension {dim}: {str(e).strip().splitlines()[-1]}") from None
        p: dict[str, Any] = {}
        if "IVF" in k:
            p["nprobe"] = DEFAULT_PARAMS["ivf"]["nprobe"]
        if "HNSW" in k:
            p["efSearch"] = DEFAULT_PARAMS["hnsw"]["efSearch"]
        spec = IndexSpec("factory", k, p)
    spec.params.update(params or {})
    return spec


def set_search_params(index: Any, params: dict[str, Any]) -> None:
    """Apply ``nprobe`` / ``efSearch`` wherever they belong inside a (possibly wrapped) index."""
    faiss = _faiss()
    ps = faiss.ParameterSpace()
    for name in ("nprobe", "efSearch"):
        if name in params:
            try:
                ps.set_index_parameter(index, name, params[name])
            except RuntimeError:
                pass  # the index has no such parameter (e.g. efSearch on IVF)


def new_index(spec: IndexSpec, dim: int, *, efConstruction: int = 40, kmeans_iters: int = 10) -> Any:
    """An empty, untrained index of ``spec`` (inner product) with the build settings every build uses."""
    faiss = _faiss()
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = _find_hnsw(index)
    if hnsw is not None:
        hnsw.efConstruction = efConstruction
    inner = faiss.downcast_index(index)
    if hasattr(inner, "cp"):
        inner.cp.niter = kmeans_iters  # IVF coarse k-means: 10 iterations reach ~all of 25's quality
    if hasattr(inner, "do_polysemous_training"):
        # the factory turns on polysemous training (simulated annealing over PQ codes, for Hamming
        # pre-filtering that we never use): 20x the training time for nothing here
        inner.do_polysemous_training = False
    return index


def training_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Rows (sorted) an index trains on: all ``n``, or a seeded random sample of ``size``."""
    return np.arange(n) if n <= size else np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def build_faiss(spec: IndexSpec, vectors: np.ndarray, *, train_size: int = 200_000, seed: int = 0,
                efConstruction: int = 40, kmeans_iters: int = 10, device: str = "cpu") -> Any:
    """Create, train (on a random sample when the kind needs it) and fill an index with ``vectors``."""
    faiss = _faiss()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = new_index(spec, x.shape[1], efConstruction=efConstruction, kmeans_iters=kmeans_iters)
    gpu = _to_gpu(index, device)
    work = gpu if gpu is not None else index
    if not work.is_trained:
        work.train(x[training_rows(len(x), train_size, seed)])
    add_vectors(work, x)
    if gpu is not None:
        index = faiss.index_gpu_to_cpu(gpu)
    set_search_params(index, spec.params)
    return index


def add_vectors(index: Any, vectors: np.ndarray, batch: int = 65536) -> None:
    """Append rows (ids continue from ``index.ntotal``), in batches to bound temporary memory."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    for s in range(0, len(x), batch):
        index.add(x[s:s + batch])


def _find_hnsw(index: Any) -> Any:
    """The HNSW graph of an HNSW index or of an IVF index's HNSW quantizer, else None."""
    faiss = _faiss()
    sub = faiss.downcast_index(index)
    if hasattr(sub, "hnsw"):
        return sub.hnsw
    q = getattr(sub, "quantizer", None)
    if q is not None:
        q = faiss.downcast_index(q)
        if hasattr(q, "hnsw"):
            return q.hnsw
    return None


def _to_gpu(index: Any, device: str) -> Any:
    """GPU copy of ``index`` when ``device`` is CUDA and FAISS was built with GPU support (``[gpu]`` extra)."""
    if not str(device).startswith("cuda"):
        return None
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:  # e.g. HNSW has no GPU implementation
        return None


@contextlib.contextmanager
def faiss_stdout_silenced():
    """FAISS's C++ prints on-disk list bookkeeping ("resizing ...", "updating ondisk filename ...") to the
    process's stdout, where ``--json`` results go: sent to /dev/null for the duration."""
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                libc.fflush(None)
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def save_faiss(index: Any, path: str | os.PathLike) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one."""
    with atomic_write(path) as tmp:
        _faiss().write_index(index, str(tmp))
    return Path(path)


def load_faiss(path: str | os.PathLike, params: dict[str, Any] | None = None, mmap: bool = False) -> Any:
    """Read an index (optionally memory-mapped, for indexes larger than RAM) and set its search params. On-disk
    inverted lists (:mod:`.ondisk`) are found beside the index file, wherever the folder has moved."""
    faiss = _faiss()
    flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0) | faiss.IO_FLAG_ONDISK_SAME_DIR
    try:
        with faiss_stdout_silenced():
            index = faiss.read_index(str(path), flags)
    except RuntimeError:  # truncated or damaged: FAISS's message is a C++ trace
        from .errors import GalleryIndexError

        raise GalleryIndexError(f"{path}: FAISS index unreadable (truncated or damaged); rebuild the index "
                                f"with `exemplar-color index build ... --overwrite`") from None
    set_search_params(index, params or {})
    return index
