"""HDF5 feature store of a gallery: one or more shard files, rows numbered globally in shard order.

A shard holds, per image (row): ``path`` (relative to the gallery root, UTF-8), ``global`` ``(D,)`` float32,
``grid`` ``(G*G, C)`` uint8, ``hist`` ``(G*G, bins)`` float16, ``size`` ``(width, height)`` int32, ``sha256``
(hex of the file's bytes) and ``class_id`` int16; its attrs hold the descriptor configuration (JSON) and the
images that failed (``failures``, JSON list of ``[path, reason]``). Shards are written whole to a temporary
file and renamed (:func:`write_shard`), so a reader or a resumed build never sees half a shard.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from ..io import atomic_write
from .descriptors import DescriptorConfig, Descriptors, dequantise_unit
from .errors import GalleryIndexError

__all__ = ["ShardRows", "write_shard", "read_shard_meta", "FeatureStore", "STORE_FORMAT"]

STORE_FORMAT = "exemplar_color-gallery-store"
STORE_VERSION = 1


@dataclass
class ShardRows:
    """Rows to write: descriptors plus per-image metadata, and the images that failed."""

    paths: list[str]
    desc: Descriptors
    sizes: np.ndarray  # (N, 2) int32, width, height
    sha256: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: Sequence["ShardRows"], config: DescriptorConfig) -> "ShardRows":
        """Join shards in order (the merge step of a build)."""
        def cat(arrs: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            arrs = [a for a in arrs if len(a)]
            return np.concatenate(arrs) if arrs else np.zeros((0, *shape), dtype)

        d = Descriptors(cat([p.desc.global_ for p in parts], (config.dim,), np.float32),
                        cat([p.desc.grid for p in parts], (config.cells, config.grid_dim), np.uint8),
                        cat([p.desc.hist for p in parts], (config.cells, config.bins), np.float16),
                        cat([p.desc.class_id for p in parts], (), np.int16))
        return cls([x for p in parts for x in p.paths], d, cat([p.sizes for p in parts], (2,), np.int32),
                   [x for p in parts for x in p.sha256], [x for p in parts for x in p.failures])


def write_shard(path: str | os.PathLike, rows: ShardRows, config: DescriptorConfig,
                attrs: dict[str, Any] | None = None) -> Path:
    """Write ``rows`` as one HDF5 shard, atomically (temp file + ``os.replace``)."""
    n, cfg = len(rows.paths), config
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = STORE_FORMAT
            f.attrs["version"] = STORE_VERSION
            f.attrs["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
            f.attrs["failures"] = json.dumps([list(x) for x in rows.failures])
            f.attrs["count"] = n
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.create_dataset("path", data=np.array(rows.paths, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("global", data=rows.desc.global_.reshape(n, cfg.dim).astype(np.float32))
            # one chunk per image's grid: re-ranking reads ~200 scattered rows per query
            f.create_dataset("grid", data=rows.desc.grid.reshape(n, cfg.cells, cfg.grid_dim),
                             chunks=(1, cfg.cells, cfg.grid_dim) if n else None)
            f.create_dataset("hist", data=rows.desc.hist.reshape(n, cfg.cells, cfg.bins).astype(np.float16))
            f.create_dataset("size", data=np.asarray(rows.sizes, np.int32).reshape(n, 2))
            f.create_dataset("sha256", data=np.array(rows.sha256, dtype="S64").reshape(n))
            f.create_dataset("class_id", data=np.asarray(rows.desc.class_id, np.int16).reshape(n))
    return Path(path)


def read_shard_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A shard's attrs (config, failures, count, ...) without loading rows; raises if unreadable."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != STORE_FORMAT:
            raise GalleryIndexError(f"{path}: not a gallery store shard")
        out = {k: f.attrs[k] for k in f.attrs}
    out["config"] = json.loads(out["config"])
    out["failures"] = [tuple(x) for x in json.loads(out["failures"])]
    out["count"] = int(out["count"])
    return out


def read_shard(path: str | os.PathLike, config: DescriptorConfig) -> ShardRows:
    """Load a whole shard into memory (used to merge parts)."""
    meta = read_shard_meta(path)
    with h5py.File(path, "r") as f:
        d = Descriptors(f["global"][...], f["grid"][...], f["hist"][...], f["class_id"][...])
        return ShardRows([p.decode() if isinstance(p, bytes) else p for p in f["path"][...]], d,
                         f["size"][...], [s.decode() for s in f["sha256"][...]], meta["failures"])


class FeatureStore:
    """Read access to the rows of several shards by global row id.

    Paths, sizes, hashes and classes are loaded at open. Grid features and histograms (the bulk:
    ``G*G*(C + 2*bins)`` bytes per image) are read on demand, or held in memory when they fit in
    ``memory_bytes``; global descriptors (already inside the FAISS index) only when asked for.
    """

    def __init__(self, files: Sequence[str | os.PathLike], config: DescriptorConfig,
                 memory_bytes: int = 1 << 30):
        self.files = [Path(f) for f in files]
        self.config = config
        paths, sizes, sha, cls, counts = [], [], [], [], []
        for fp in self.files:
            try:
                with h5py.File(fp, "r") as f:
                    paths += [p.decode() if isinstance(p, bytes) else p for p in f["path"][...]]
                    sizes.append(f["size"][...])
                    sha.append(f["sha256"][...])
                    cls.append(f["class_id"][...])
                    counts.append(len(f["path"]))
            except (OSError, KeyError) as e:
                raise GalleryIndexError(f"{fp}: gallery store shard unreadable ({e})") from None
        self.paths: list[str] = paths
        self.sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2), np.int32)
        self.sha256 = np.concatenate(sha) if sha else np.zeros(0, "S64")
        self.class_id = np.concatenate(cls) if cls else np.zeros(0, np.int16)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._handles: OrderedDict[int, h5py.File] = OrderedDict()
        per_row = config.cells * (config.grid_dim + 2 * config.bins)
        self._memory: dict[str, np.ndarray] | None = None
        if len(self) * per_row <= memory_bytes:
            self._memory = {k: self._read_all(k) for k in ("grid", "hist")}

    def __len__(self) -> int:
        return len(self.paths)

    def _read_all(self, name: str) -> np.ndarray:
        parts = []
        for fp in self.files:
            with h5py.File(fp, "r") as f:
                parts.append(f[name][...])
        return np.concatenate(parts)

    def global_descriptors(self) -> np.ndarray:
        """``(N, D)`` float32: every global descriptor (to rebuild an index of another kind)."""
        return self._read_all("global") if self.files else np.zeros((0, self.config.dim), np.float32)

    def _handle(self, s: int) -> h5py.File:
        if s not in self._handles:
            if len(self._handles) >= 32:
                self._handles.popitem(last=False)[1].close()
            self._handles[s] = h5py.File(self.files[s], "r")
        self._handles.move_to_end(s)
        return self._handles[s]

    def rows(self, name: str, ids: np.ndarray) -> np.ndarray:
        """The stored rows ``ids`` of dataset ``name`` (``grid``, ``hist``, ...), as stored (quantised)."""
        if self._memory is not None:
            return self._memory[name][ids]
        shard = np.searchsorted(self.offsets, ids, side="right") - 1
        out: np.ndarray | None = None
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            uniq, inv = np.unique(ids[sel] - self.offsets[s], return_inverse=True)  # h5py: increasing
            block = self._handle(int(s))[name][uniq][inv]
            if out is None:
                out = np.empty((len(ids), *block.shape[1:]), block.dtype)
            out[sel] = block
        assert out is not None
        return out

    def rerank_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid cells ``(n, G*G, C)`` float32 unit vectors and histograms ``(n, G*G, bins)`` float32 of rows
        ``ids`` (any order, repeats allowed)."""
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            c = self.config
            return np.zeros((0, c.cells, c.grid_dim), np.float32), np.zeros((0, c.cells, c.bins), np.float32)
        return dequantise_unit(self.rows("grid", ids)), self.rows("hist", ids).astype(np.float32)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()
