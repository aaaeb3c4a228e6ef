"""Updates of a built gallery index: more images (a new store shard, a new FAISS generation) and entries whose
file is gone, each committed as a new manifest that the open :class:`~exemplar_color.retrieval.GalleryIndex`
then takes up."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..artifacts import BuildReport
from ..io import list_images
from .build import commit, extract, rows_from
from .descriptors import DescriptorConfig, DescriptorExtractor
from .errors import GalleryIndexError
from .index import add_vectors, save_faiss
from .store import ShardRows, write_shard

__all__ = ["OpenIndex", "add_images", "remove_missing"]


class OpenIndex(Protocol):
    """What :func:`add_images` and :func:`remove_missing` read of an open
    :class:`~exemplar_color.retrieval.GalleryIndex` (which calls them, and takes up the manifest they commit)."""

    path: Path
    root: Path
    manifest: dict[str, Any]
    removed: np.ndarray
    store: Any
    config: DescriptorConfig
    faiss: Any

    @property
    def extractor(self) -> DescriptorExtractor: ...


def add_images(index: OpenIndex, images: Sequence[str | os.PathLike] | str | os.PathLike, *, batch: int = 16,
               workers: int = 0, progress: bool = True) -> tuple[BuildReport, dict[str, Any] | None]:
    """:meth:`GalleryIndex.add <exemplar_color.retrieval.GalleryIndex.add>`: a new store shard, a new FAISS
    generation and a new manifest, committed atomically; returns the report and the committed manifest (None:
    nothing new), which the index then takes up."""
    t0 = time.perf_counter()
    if index.manifest["index"].get("ivfdata"):
        raise GalleryIndexError(f"{index.path}: its inverted lists are on disk (built with --on-disk) and are "
                                f"written once: rebuild it with the new photos (index build --on-disk --overwrite)")
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        files = list_images(images)
    elif isinstance(images, (str, os.PathLike)):
        files = [Path(images)]
    else:
        files = [Path(f) for f in images]
    files = [Path(os.path.abspath(f.expanduser())) for f in files]  # not resolve(): keep symlinked names
    rel = [os.path.relpath(f, index.root) for f in files]
    removed = set(index.removed.tolist())
    known = {p: i for i, p in enumerate(index.store.paths) if i not in removed}
    report = BuildReport(item="path", total=len(rel))
    committed = None
    todo, replaced = [], []
    for r in rel:
        i = known.get(r)
        if i is not None:
            sha = hashlib.sha256((index.root / r).read_bytes()).hexdigest() if (index.root / r).is_file() else ""
            if sha == index.store.sha256[i].decode():
                report.reused += 1
                continue
            replaced.append(i)
        todo.append(r)
    if todo:
        parts = [rows_from(items, d) for items, d in extract(index.extractor, index.root, todo, batch=batch,
                                                               workers=workers, progress=progress, desc="adding")]
        rows = ShardRows.concat(parts, index.config)
        report.failures = rows.failures
        report.computed = report.written = len(rows.paths)
        if rows.paths:
            m = json.loads(json.dumps(index.manifest))
            gen = int(m["generation"]) + 1
            store_file, index_file = f"store-{gen:06d}.h5", f"index-{gen:06d}.faiss"
            write_shard(index.path / store_file, rows, index.config)
            add_vectors(index.faiss, rows.desc.global_)
            save_faiss(index.faiss, index.path / index_file)
            old_index = m["index"]["file"]
            m["shards"].append({"file": store_file, "count": len(rows.paths)})
            m["index"]["file"] = index_file
            m["removed"] = sorted(set(m.get("removed", [])) | set(replaced))
            m["failures"] = m.get("failures", []) + [list(x) for x in rows.failures]
            committed = commit(index.path, m, gen)
            report.parts_built = 1
            _prune_old_index(index.path, keep={index_file, old_index})
    report.seconds = time.perf_counter() - t0
    return report, committed


def remove_missing(index: OpenIndex) -> tuple[list[str], dict[str, Any] | None]:
    """Drop entries whose file no longer exists under the gallery root; returns their relative paths and the
    committed manifest (None: nothing was gone), which the index then takes up."""
    removed = set(index.removed.tolist())
    gone = [i for i, p in enumerate(index.store.paths) if i not in removed and not (index.root / p).exists()]
    committed = None
    if gone:
        m = json.loads(json.dumps(index.manifest))
        m["removed"] = sorted(removed | set(gone))
        committed = commit(index.path, m, int(m["generation"]) + 1)
    return [index.store.paths[i] for i in gone], committed


def _prune_old_index(path: Path, keep: set[str]) -> None:
    """Keep the current and the previous FAISS generation (a reader may hold the previous manifest)."""
    for f in path.glob("index-*.faiss"):
        if f.name not in keep:
            f.unlink(missing_ok=True)
