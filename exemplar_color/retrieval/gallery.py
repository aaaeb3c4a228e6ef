"""The query side of a gallery index: open the folder a build wrote (:mod:`.build`) and recommend references.

:class:`GalleryIndex` is the one public face of both sides: ``build`` and ``add`` hand over to
:mod:`.build`, which writes the folder (layout described there); everything else here reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..artifacts import BuildReport
from ..io import ImageInput
from ..runtime import set_threads
from ..backbone.spec import DEFAULT_VARIANT, Variant
from . import build as _build
from . import update
from .build import check_config, read_manifest
from .descriptors import DescriptorConfig, DescriptorExtractor, Descriptors, dequantise_unit
from .errors import GalleryIndexError
from .index import IndexSpec, load_faiss
from .search import RankWeights, Recommendation, rerank_scores
from .store import FeatureStore

__all__ = ["GalleryIndex", "read_manifest"]


class GalleryIndex:
    """Recommends references for a target photo from a gallery of colour images.

    Build once (``GalleryIndex.build``), then ``GalleryIndex.open(path).search(target, k=5)``: FAISS top
    ``candidates`` on global descriptors, re-ranked by the published local score (:mod:`.search`).

    Example:
        >>> index = GalleryIndex.build("photos/", "photos.index", level="relu5_4")  # doctest: +SKIP
        >>> [r.path for r in index.search("old.jpg", k=5)]  # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: dict[str, Any], *, root: str | os.PathLike | None = None,
                 weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 extractor: DescriptorExtractor | None = None, mmap: bool = False,
                 memory_bytes: int = 1 << 30):
        self.path = path
        self.manifest = manifest
        self.config = DescriptorConfig.from_dict(manifest["descriptor"])
        self.root = Path(root) if root is not None else Path(manifest["gallery_root"])
        self.spec = IndexSpec(manifest["index"]["kind"], manifest["index"]["factory"],
                              dict(manifest["index"].get("params", {})))
        self.store = FeatureStore([path / s["file"] for s in manifest["shards"]], self.config, memory_bytes)
        self.faiss = load_faiss(path / manifest["index"]["file"], self.spec.params, mmap=mmap)
        if self.faiss.ntotal != len(self.store):
            raise GalleryIndexError(f"{path}: FAISS index has {self.faiss.ntotal} entries but the store has "
                                    f"{len(self.store)}; rebuild the index")
        self.removed = np.asarray(sorted(manifest.get("removed", [])), np.int64)
        self._weights, self._device = weights, device
        self.build_report: BuildReport | None = None
        self._extractor = None
        if extractor is not None:
            self._set_extractor(extractor)
        elif weights is not None:
            self._set_extractor(DescriptorExtractor(self.config, weights=weights, device=device))

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, path: str | os.PathLike, *, weights: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", level: str | None = None, variant: Variant | None = None,
             expect: DescriptorConfig | None = None, extractor: DescriptorExtractor | None = None,
             root: str | os.PathLike | None = None, mmap: bool = False, threads: int | None = None,
             memory_bytes: int = 1 << 30) -> "GalleryIndex":
        """Open a built index.

        Args:
            weights: the VGG-19 file queries are described with; refused unless it is the file the index
                was built with (SHA-256). ``None``: resolved at the first query (env var, cache, download).
            level, variant, expect: what the caller expects; any difference raises
                :class:`IndexMismatchError` instead of returning meaningless neighbours.
            root: the gallery folder, if it moved since the build (paths are stored relative to it).
            mmap: memory-map the FAISS file (indexes larger than RAM). threads: torch and FAISS CPU threads.
        """
        p = Path(path)
        m = read_manifest(p)
        have = DescriptorConfig.from_dict(m["descriptor"])
        check_config(str(p), have, {"level": level, "variant": variant})
        if expect is not None:
            want = expect.to_dict()
            want.pop("weights_sha256")
            check_config(str(p), have, want)
        set_threads(threads, faiss=True)
        return cls(p, m, root=root, weights=weights, device=device, extractor=extractor, mmap=mmap,
                   memory_bytes=memory_bytes)

    @classmethod
    def build(cls, gallery: str | os.PathLike, path: str | os.PathLike, *, level: str = "relu5_4",
              config: DescriptorConfig | None = None, kind: str = "flat", params: dict[str, Any] | None = None,
              weights: str | os.PathLike | None = None, variant: Variant = DEFAULT_VARIANT,
              device: str | torch.device = "cpu", batch: int = 16, workers: int = 0, resume: bool = False,
              overwrite: bool = False, checkpoint: int = 256, rank: int | None = None, world: int | None = None,
              progress: bool = True, threads: int | None = None, on_disk: bool = False) -> "GalleryIndex | None":
        """Describe every image under ``gallery`` and index them at ``path`` (a folder).

        Args:
            level: global-descriptor level (ignored when ``config`` is given).
            kind: ``flat`` (exact, default), ``ivf``, ``hnsw``, ``ivfpq`` or a FAISS factory string.
            params: search parameters stored with the index (``nprobe``, ``efSearch``).
            weights, variant, device: the VGG-19 backbone.
            batch: images per forward pass. workers: DataLoader processes decoding JPEGs.
            resume: continue an interrupted build (finished chunks are not recomputed).
            overwrite: delete an existing index or partial build at ``path`` first.
            checkpoint: images per chunk file (the unit of resumption and of rank sharding).
            rank, world: rank-sharded extraction; default from ``RANK``/``WORLD_SIZE``.
            on_disk: an IVF kind keeps its inverted lists in a file beside the index, and the build never holds
                the gallery in memory (galleries larger than RAM; :mod:`exemplar_color.retrieval.ondisk`).

        Returns:
            The open index (with ``build_report``), or ``None`` on ranks other than 0.

        Raises:
            EmptyGalleryError: no images under ``gallery`` (or none readable).
            PartialBuildError: an interrupted build is at ``path`` and neither ``resume`` nor ``overwrite``.
            IndexMismatchError: ``resume`` with another configuration than the interrupted build's.
        """
        report, extractor = _build.build_gallery(
            gallery, path, config or DescriptorConfig(level=level, variant=variant), kind=kind, params=params,
            weights=weights, device=device, batch=batch, workers=workers, resume=resume, overwrite=overwrite,
            checkpoint=checkpoint, rank=rank, world=world, progress=progress, on_disk=on_disk)
        if report is None:
            return None
        index = cls.open(path, extractor=extractor, weights=None if extractor else weights, device=device,
                         threads=threads)
        index.build_report = report
        return index

    def _set_extractor(self, extractor: DescriptorExtractor) -> None:
        check_config(str(self.path), self.config, extractor.config.to_dict())
        self._extractor = extractor

    @property
    def extractor(self) -> DescriptorExtractor:
        """The descriptor extractor (created on first use from the manifest's configuration)."""
        if self._extractor is None:
            weights = self._weights
            hint = self.manifest["backbone"].get("weights_path")
            if weights is None and not os.environ.get("EXEMPLAR_COLOR_VGG_WEIGHTS") and hint and Path(hint).is_file():
                weights = hint  # the file the index was built with (its SHA-256 is checked again)
            self._set_extractor(DescriptorExtractor(self.config, weights=weights, device=self._device))
        return self._extractor  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.store) - len(self.removed)

    def __repr__(self) -> str:
        return (f"GalleryIndex({str(self.path)!r}, {len(self)} images, {self.config.kind} dim {self.config.dim}, "
                f"{self.spec.factory})")

    # ------------------------------------------------------------------ search
    def describe(self, images: Sequence[ImageInput]) -> Descriptors:
        """Descriptors of query images (paths, PIL images or arrays), computed like the gallery's."""
        return self.extractor.describe(list(images))

    def stored_descriptors(self) -> Descriptors:
        """Every gallery image's own descriptors, in store order: queries of the gallery against itself
        (training references) without describing the images again."""
        ids = np.arange(len(self.store))
        return Descriptors(self.store.global_descriptors(), self.store.rows("grid", ids),
                           self.store.rows("hist", ids).astype(np.float32), self.store.class_id.copy())

    def search(self, image: ImageInput, k: int = 5, candidates: int = 200, *,
               weights: RankWeights = RankWeights(), rerank: bool = True,
               skip_missing: bool = False) -> list[Recommendation]:
        """Best ``k`` references for one target (path, PIL image or array; colour or gray: only L is used)."""
        return self.search_descriptors(self.describe([image]), k, candidates, weights=weights, rerank=rerank,
                                       skip_missing=skip_missing)[0]

    def search_batch(self, images: Sequence[ImageInput], k: int = 5, candidates: int = 200, *,
                     batch: int = 16, **kw: Any) -> list[list[Recommendation]]:
        """:meth:`search` for many targets, describing them ``batch`` at a time."""
        out: list[list[Recommendation]] = []
        for s in range(0, len(images), batch):
            out += self.search_descriptors(self.describe(images[s:s + batch]), k, candidates, **kw)
        return out

    def search_descriptors(self, q: Descriptors, k: int = 5, candidates: int = 200, *,
                           weights: RankWeights = RankWeights(), rerank: bool = True,
                           skip_missing: bool = False) -> list[list[Recommendation]]:
        """Two-stage search from precomputed query descriptors (one result list per query)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        candidates = max(candidates, k)
        fetch = min(self.faiss.ntotal, candidates + len(self.removed))
        sims, ids = self.faiss.search(np.ascontiguousarray(q.global_, np.float32), fetch)
        results = []
        for qi in range(len(q)):
            keep = ids[qi] >= 0
            if len(self.removed):
                keep &= ~np.isin(ids[qi], self.removed)
            cid, csim = ids[qi][keep][:candidates], sims[qi][keep][:candidates]
            if rerank and len(cid):
                grid, hist = self.store.rerank_rows(cid)
                parts = rerank_scores(dequantise_unit(q.grid[qi]), q.hist[qi].astype(np.float32),
                                      grid, hist, weights=weights, t_class=int(q.class_id[qi]),
                                      c_class=self.store.class_id[cid], c_global=csim)
                score = parts["score"]
            else:
                parts, score = {}, 1.0 - csim
            order = np.argsort(score, kind="stable")
            recs: list[Recommendation] = []
            for j in order:
                rel = self.store.paths[cid[j]]
                full = str(self.root / rel)
                if skip_missing and not os.path.exists(full):
                    continue
                p = {"global": float(csim[j]), **{n: float(v[j]) for n, v in parts.items() if n != "score"}}
                recs.append(Recommendation(full, float(score[j]), p, int(cid[j]), rel))
                if len(recs) == k:
                    break
            results.append(recs)
        return results

    # ------------------------------------------------------------------ updates
    def add(self, images: Sequence[str | os.PathLike] | str | os.PathLike, *, batch: int = 16, workers: int = 0,
            progress: bool = True) -> BuildReport:
        """Describe and index more images (a folder or a list of files): a new store shard, a new FAISS
        generation and a new manifest, committed atomically. Files already indexed with the same content
        are skipped; changed files replace their old entry."""
        report, manifest = update.add_images(self, images, batch=batch, workers=workers, progress=progress)
        if manifest is not None:
            self.reload(manifest)
        return report

    def remove_missing(self) -> list[str]:
        """Drop entries whose file no longer exists under the gallery root; returns their relative paths."""
        gone, manifest = update.remove_missing(self)
        if manifest is not None:
            self.reload(manifest)
        return gone

    def reload(self, manifest: dict[str, Any]) -> None:
        """Take up a newly committed manifest of this folder."""
        self.manifest = manifest
        self.removed = np.asarray(sorted(manifest["removed"]), np.int64)
        self.store.close()
        self.store = FeatureStore([self.path / s["file"] for s in manifest["shards"]], self.config)

    def close(self) -> None:
        self.store.close()
