"""A gallery index: HDF5 feature store + FAISS index + JSON manifest in one folder, built resumably.

A gallery holds colour photos only: grayscale files are skipped (and reported, like unreadable ones, in the
build report's ``failures`` with a reason starting ``grayscale``), since they have no colour to give.

Folder layout (``PATH``)::

    manifest.json          what the index is (backbone, levels, descriptor, dim, index kind, count, versions)
                           and which files make it up; written last, atomically: it *is* the commit point
    store-000001.h5        feature store shards (see :mod:`.store`); ``index add`` appends a new shard
    index-000003.faiss     FAISS index of generation 3 (ids = store rows); the previous generation is kept
                           one step so that a reader holding the old manifest can still open its files
    .build/plan.json       only while a build runs: the file list and configuration being built
    .build/part-000012.h5  finished chunks of that build (``checkpoint`` images each)

A build extracts chunk after chunk, each written whole (temp + ``os.replace``); killed at any moment, it
resumes at the first missing chunk and never recomputes a finished one. When all chunks exist the parts
are merged into one store shard, the FAISS index is built, and the manifest is written. Under ``torchrun``
(``RANK``/``WORLD_SIZE``) rank ``r`` extracts chunks ``c % WORLD_SIZE == r`` and rank 0 merges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .._version import __version__
from ..backbone import Variant
from ..io import ImageInput, atomic_write, list_images, load_image
from .descriptors import DescriptorConfig, DescriptorExtractor, Descriptors, dequantise_unit, prepare_gray
from .errors import (EmptyGalleryError, GalleryIndexError, IndexMismatchError, IndexNotFoundError,
                     PartialBuildError)
from ..runtime import dist_env, set_threads
from .index import IndexSpec, add_vectors, build_faiss, load_faiss, resolve_kind, save_faiss
from .search import RankWeights, Recommendation, rerank_scores
from .store import FeatureStore, ShardRows, read_shard, read_shard_meta, readable, write_shard

__all__ = ["GalleryIndex", "BuildReport", "read_manifest", "MANIFEST", "FORMAT"]

log = logging.getLogger("exemplar_color.retrieval")

FORMAT = "exemplar_color-gallery-index"
VERSION = 1
MANIFEST = "manifest.json"
_BUILD = ".build"


@dataclass
class BuildReport:
    """What a build or an add did. ``reused``: images whose chunk a previous (killed) run had finished."""

    total: int = 0
    computed: int = 0
    reused: int = 0
    indexed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    extract_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        t = self.extract_seconds or self.seconds
        return self.computed / t if t > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "computed": self.computed, "reused": self.reused, "indexed": self.indexed,
                "failed": len(self.failures), "failures": [{"path": p, "reason": r} for p, r in self.failures],
                "seconds": round(self.seconds, 3), "extract_seconds": round(self.extract_seconds, 3),
                "images_per_second": round(self.images_per_second, 2)}


def _versions() -> dict[str, str]:
    import faiss
    import h5py

    return {"exemplar_color": __version__, "torch": torch.__version__, "faiss": faiss.__version__,
            "h5py": h5py.__version__, "numpy": np.__version__, "format": str(VERSION)}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        readable(tmp)


def read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not mpath.is_file():
        if (path / _BUILD / "plan.json").is_file():
            raise PartialBuildError(f"{path}: the index build was interrupted before it finished; continue it with "
                                    f"`exemplar-color index build GALLERY --index {path} --resume`")
        raise IndexNotFoundError(f"{path}: no gallery index here (no {MANIFEST}); build one with "
                                 f"`exemplar-color index build GALLERY --index {path}`")
    try:
        m = json.loads(mpath.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise GalleryIndexError(f"{mpath}: unreadable manifest ({e})") from None
    if m.get("format") != FORMAT:
        raise GalleryIndexError(f"{mpath}: not a gallery index manifest (format {m.get('format')!r})")
    if int(m.get("format_version", 0)) > VERSION:
        raise IndexMismatchError(f"{mpath}: index format v{m.get('format_version')} is newer than this "
                                 f"exemplar_color supports (v{VERSION}); upgrade exemplar_color")
    return m


def _check_config(where: str, have: DescriptorConfig, **want: Any) -> None:
    """Refuse (IndexMismatchError) when any requested setting differs from what the index was built with."""
    mine = have.to_dict()
    diff = [f"{k}: index has {mine[k]!r}, requested {v!r}" for k, v in want.items()
            if v is not None and v != "" and mine.get(k) != v]
    if diff:
        raise IndexMismatchError(f"{where}: the index was built with another backbone/descriptor "
                                 f"({'; '.join(diff)}); query it with the same settings or rebuild it")


def is_gray_array(arr: np.ndarray) -> bool:
    """A photo without colour (mode L, or RGB with almost no chroma), judged on at most ~250k pixels."""
    if arr.ndim == 2 or arr.shape[-1] == 1:
        return True
    step = max(1, int(math.sqrt(arr.shape[0] * arr.shape[1] / 250_000)))
    from ..working import is_gray

    return is_gray(torch.from_numpy(np.ascontiguousarray(arr[::step, ::step])).permute(2, 0, 1)[None])


class _ImageDataset(torch.utils.data.Dataset):
    """Decodes one gallery image per item (in DataLoader workers): gray + L at working size, size, hash."""

    def __init__(self, root: Path, rel: Sequence[str], size: int):
        self.root, self.rel, self.size = root, list(rel), size

    def __len__(self) -> int:
        return len(self.rel)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rel = self.rel[i]
        path = self.root / rel
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an animated or transparent photo is still a reference
                arr = load_image(path)
            if is_gray_array(arr):
                return {"i": i, "rel": rel, "ok": False, "reason": "grayscale: no colour to give as a reference"}
            gray, lum = prepare_gray(arr, self.size)
            return {"i": i, "rel": rel, "ok": True, "gray": gray, "lum": lum, "sha": sha,
                    "wh": (arr.shape[1], arr.shape[0])}
        except Exception as e:  # a gallery of a million files has every kind of broken file: log, skip
            reason = str(e) if isinstance(e, OSError | ValueError) else f"{type(e).__name__}: {e}"
            return {"i": i, "rel": rel, "ok": False, "reason": reason.replace(str(path) + ": ", "")}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def _extract(extractor: DescriptorExtractor, root: Path, rel: Sequence[str], *, batch: int, workers: int,
             progress: bool, desc: str = "describing", initial: int = 0, total: int | None = None
             ) -> Iterable[tuple[list[dict[str, Any]], Descriptors | None]]:
    """Yield ``(items, descriptors of the ok items)`` batch by batch, in order, with a progress bar."""
    from tqdm import tqdm

    ds = _ImageDataset(root, rel, extractor.config.size)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=_collate,
                                         pin_memory=extractor.device.type == "cuda",
                                         prefetch_factor=4 if workers else None,
                                         persistent_workers=False)
    bar = tqdm(total=total if total is not None else len(rel), initial=initial, desc=desc, unit="img",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for items in loader:
            ok = [it for it in items if it["ok"]]
            for it in items:
                if not it["ok"]:
                    log.warning("skipping %s: %s", it["rel"], it["reason"])
            d = extractor(torch.stack([it["gray"] for it in ok]), torch.stack([it["lum"] for it in ok])) if ok else None
            bar.update(len(items))
            yield items, d
    finally:
        bar.close()


def _rows_from(items: list[dict[str, Any]], d: Descriptors | None) -> ShardRows:
    ok = [it for it in items if it["ok"]]
    cfg_empty = Descriptors(np.zeros((0, 0), np.float32), np.zeros((0, 0, 0), np.uint8),
                            np.zeros((0, 0, 0), np.float16), np.zeros(0, np.int16))
    return ShardRows([it["rel"] for it in ok], d if d is not None else cfg_empty,
                     np.array([it["wh"] for it in ok], np.int32).reshape(-1, 2), [it["sha"] for it in ok],
                     [(it["rel"], it["reason"]) for it in items if not it["ok"]])


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


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
        _check_config(str(p), have, level=level, variant=variant)
        if expect is not None:
            want = expect.to_dict()
            want.pop("weights_sha256")
            _check_config(str(p), have, **want)
        set_threads(threads, faiss=True)
        return cls(p, m, root=root, weights=weights, device=device, extractor=extractor, mmap=mmap,
                   memory_bytes=memory_bytes)

    @classmethod
    def build(cls, gallery: str | os.PathLike, path: str | os.PathLike, *, level: str = "relu5_4",
              config: DescriptorConfig | None = None, kind: str = "flat", params: dict[str, Any] | None = None,
              weights: str | os.PathLike | None = None, variant: Variant = "caffe",
              device: str | torch.device = "cpu", batch: int = 16, workers: int = 0, resume: bool = False,
              overwrite: bool = False, checkpoint: int = 256, rank: int | None = None, world: int | None = None,
              progress: bool = True, threads: int | None = None) -> "GalleryIndex | None":
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

        Returns:
            The open index (with ``build_report``), or ``None`` on ranks other than 0.

        Raises:
            EmptyGalleryError: no images under ``gallery`` (or none readable).
            PartialBuildError: an interrupted build is at ``path`` and neither ``resume`` nor ``overwrite``.
            IndexMismatchError: ``resume`` with another configuration than the interrupted build's.
        """
        t0 = time.perf_counter()
        env = dist_env()
        rank = env.rank if rank is None else rank
        world = env.world if world is None else world
        root = Path(gallery).expanduser().resolve()
        out = Path(path)
        build_dir = out / _BUILD
        if not root.is_dir():
            raise EmptyGalleryError(f"{root}: gallery folder not found")
        if overwrite and rank == 0:
            cls._clear(out)
        if (out / MANIFEST).is_file():
            if not resume:
                raise GalleryIndexError(f"{out}: an index already exists; add images with `exemplar-color index "
                                        f"add`, or rebuild with --overwrite")
            shutil.rmtree(build_dir, ignore_errors=True)
            index = cls.open(out, weights=weights, device=device)
            index.build_report = BuildReport(total=len(index.store), reused=len(index.store),
                                             indexed=len(index.store), seconds=time.perf_counter() - t0)
            return index
        plan_path = build_dir / "plan.json"
        if plan_path.is_file() and not resume and rank == 0:  # other ranks may start after rank 0 wrote it
            done = len(list(build_dir.glob("part-*.h5")))
            raise PartialBuildError(f"{out}: an interrupted build is here ({done} chunk(s) finished); continue it "
                                    f"with --resume (resume=True) or start again with --overwrite")
        files = [] if plan_path.is_file() else list_images(root)
        if not plan_path.is_file() and not files:  # before loading VGG-19: fail fast
            raise EmptyGalleryError(f"{root}: no images found (looked for files ending in .jpg, .jpeg, .png, "
                                    f".tif, .webp, .bmp, ...)")
        cfg = config or DescriptorConfig(level=level, variant=variant)
        extractor = DescriptorExtractor(cfg, weights=weights, device=device)
        if plan_path.is_file():
            plan = json.loads(plan_path.read_text())
            old = DescriptorConfig.from_dict(plan["config"])
            want = extractor.config.to_dict()
            _check_config(f"{out} (interrupted build)", old, **want)
            rel = plan["files"]
            root = Path(plan["root"])
        else:
            rel = [str(f.relative_to(root)) for f in files]
            plan = {"format": FORMAT, "root": str(root), "config": extractor.config.to_dict(), "kind": kind,
                    "params": params or {}, "checkpoint": int(checkpoint), "files": rel}
            plan["digest"] = _digest(plan)
            if rank == 0:
                _write_json(plan_path, plan)
        ckpt = int(plan["checkpoint"])
        n_chunks = math.ceil(len(rel) / ckpt)

        def part(c: int) -> Path:
            return build_dir / f"part-{c:06d}.h5"

        def part_ok(c: int) -> bool:
            try:
                meta = read_shard_meta(part(c))
                return meta.get("plan") == plan["digest"] and int(meta.get("chunk", -1)) == c
            except Exception:
                return False

        for stale in build_dir.glob(".part-*"):  # temp files of a killed run: never valid, never read
            stale.unlink(missing_ok=True)
        mine = [c for c in range(n_chunks) if c % world == rank]
        todo = [c for c in mine if not part_ok(c)]
        report = BuildReport(total=len(rel))
        chunk_files = {c: rel[c * ckpt:(c + 1) * ckpt] for c in todo}
        report.reused = sum(len(rel[c * ckpt:(c + 1) * ckpt]) for c in mine) - sum(map(len, chunk_files.values()))
        flat = [f for c in todo for f in chunk_files[c]]
        chunk_of = np.repeat(np.array(todo, np.int64), [len(chunk_files[c]) for c in todo])
        pending: list[tuple[list[dict[str, Any]], Descriptors | None]] = []
        filled, cur = 0, 0
        t_extract = time.perf_counter()
        for items, d in _extract(extractor, root, flat, batch=batch, workers=workers, progress=progress,
                                 desc=f"indexing{'' if world == 1 else f' (rank {rank}/{world})'}",
                                 initial=report.reused, total=report.reused + len(flat)):
            pending.append((items, d))
            filled += len(items)
            report.computed += sum(it["ok"] for it in items)
            # flush every chunk completed by this batch (batches may straddle chunks)
            while cur < len(todo) and filled >= len(chunk_files[todo[cur]]):
                c = todo[cur]
                size = len(chunk_files[c])
                taken, rest = _split_pending(pending, size)
                rows = ShardRows.concat([_rows_from(it, dd) for it, dd in taken], extractor.config)
                write_shard(part(c), rows, extractor.config, attrs={"plan": plan["digest"], "chunk": c})
                pending, filled, cur = rest, filled - size, cur + 1
        t_extract = time.perf_counter() - t_extract
        if rank != 0:
            return None
        if world > 1:
            _wait_for(lambda: all(part_ok(c) for c in range(n_chunks)), f"{n_chunks} chunk files in {build_dir}")
        # merge: one store shard, the FAISS index, then the manifest (the commit point)
        parts = [read_shard(part(c), extractor.config) for c in range(n_chunks)]
        rows = ShardRows.concat(parts, extractor.config)
        report.failures = rows.failures
        if not rows.paths:
            reasons = "; ".join(f"{p}: {r}" for p, r in rows.failures[:3])
            raise EmptyGalleryError(f"{root}: none of the {len(rel)} images could be read ({reasons}...)")
        cls._commit_new(out, root, extractor.config, plan["kind"], plan["params"], rows, progress,
                        extractor.weights_path)
        index = cls.open(out, extractor=extractor, threads=threads)
        report.indexed = len(rows.paths)
        report.seconds = time.perf_counter() - t0
        report.extract_seconds = t_extract
        index.build_report = report
        shutil.rmtree(build_dir, ignore_errors=True)
        return index

    @staticmethod
    def _clear(out: Path) -> None:
        """Remove an index folder's own files (never anything else a user put there)."""
        shutil.rmtree(out / _BUILD, ignore_errors=True)
        for pat in (MANIFEST, "store-*.h5", "index-*.faiss", f".{MANIFEST}.*", ".store-*", ".index-*"):
            for f in out.glob(pat):
                f.unlink(missing_ok=True)

    @staticmethod
    def _commit_new(out: Path, root: Path, config: DescriptorConfig, kind: str, params: dict[str, Any],
                    rows: ShardRows, progress: bool, weights_path: str | None) -> None:
        spec = resolve_kind(kind, config.dim, len(rows.paths), params)
        store_file = "store-000001.h5"
        write_shard(out / store_file, rows, config)
        if progress:
            print(f"building FAISS index {spec.factory} over {len(rows.paths)} descriptors", file=sys.stderr)
        index = build_faiss(spec, rows.desc.global_)
        index_file = "index-000001.faiss"
        save_faiss(index, out / index_file)
        manifest = {
            "format": FORMAT, "format_version": VERSION, "generation": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "backbone": {"name": "vgg19", "variant": config.variant, "levels": list(config.levels),
                         "weights_sha256": config.weights_sha256, "weights_path": weights_path},
            "descriptor": config.to_dict(),
            "index": {**spec.to_dict(), "file": index_file},
            "gallery_root": str(root), "count": len(rows.paths), "rows": len(rows.paths),
            "shards": [{"file": store_file, "count": len(rows.paths)}], "removed": [],
            "failures": [list(x) for x in rows.failures], "versions": _versions(),
        }
        _write_json(out / MANIFEST, manifest)

    def _set_extractor(self, extractor: DescriptorExtractor) -> None:
        have = self.config.to_dict()
        got = extractor.config.to_dict()
        diff = [f"{k}: index has {have[k]!r}, extractor has {got[k]!r}" for k in have if have[k] != got[k]]
        if diff:
            raise IndexMismatchError(f"{self.path}: the index was built with another backbone/descriptor "
                                     f"({'; '.join(diff)}); query it with the same settings or rebuild it")
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
        return Descriptors(self.store.global_descriptors(), self.store._rows("grid", ids),
                           self.store._rows("hist", ids).astype(np.float32), self.store.class_id.copy())

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
        t0 = time.perf_counter()
        if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
            files = list_images(images)
        elif isinstance(images, (str, os.PathLike)):
            files = [Path(images)]
        else:
            files = [Path(f) for f in images]
        files = [Path(os.path.abspath(f.expanduser())) for f in files]  # not resolve(): keep symlinked names
        rel = [os.path.relpath(f, self.root) for f in files]
        removed = set(self.removed.tolist())
        known = {p: i for i, p in enumerate(self.store.paths) if i not in removed}
        report = BuildReport(total=len(rel))
        todo, replaced = [], []
        for r in rel:
            i = known.get(r)
            if i is not None:
                sha = hashlib.sha256((self.root / r).read_bytes()).hexdigest() if (self.root / r).is_file() else ""
                if sha == self.store.sha256[i].decode():
                    report.reused += 1
                    continue
                replaced.append(i)
            todo.append(r)
        if not todo:
            report.seconds = time.perf_counter() - t0
            return report
        parts = [_rows_from(items, d) for items, d in _extract(self.extractor, self.root, todo, batch=batch,
                                                               workers=workers, progress=progress, desc="adding")]
        rows = ShardRows.concat(parts, self.config)
        report.failures = rows.failures
        report.computed = len(rows.paths)
        if rows.paths:
            m = json.loads(json.dumps(self.manifest))
            gen = int(m["generation"]) + 1
            store_file, index_file = f"store-{gen:06d}.h5", f"index-{gen:06d}.faiss"
            write_shard(self.path / store_file, rows, self.config)
            add_vectors(self.faiss, rows.desc.global_)
            save_faiss(self.faiss, self.path / index_file)
            old_index = m["index"]["file"]
            m["shards"].append({"file": store_file, "count": len(rows.paths)})
            m["index"]["file"] = index_file
            m["removed"] = sorted(set(m.get("removed", [])) | set(replaced))
            m["failures"] = m.get("failures", []) + [list(x) for x in rows.failures]
            self._commit(m, gen)
            self._prune_old_index(old_index)
        report.indexed = report.computed
        report.seconds = time.perf_counter() - t0
        return report

    def remove_missing(self) -> list[str]:
        """Drop entries whose file no longer exists under the gallery root; returns their relative paths."""
        removed = set(self.removed.tolist())
        gone = [i for i, p in enumerate(self.store.paths) if i not in removed and not (self.root / p).exists()]
        if gone:
            m = json.loads(json.dumps(self.manifest))
            m["removed"] = sorted(removed | set(gone))
            self._commit(m, int(m["generation"]) + 1)
        return [self.store.paths[i] for i in gone]

    def _commit(self, m: dict[str, Any], gen: int) -> None:
        m["generation"] = gen
        m["count"] = int(sum(s["count"] for s in m["shards"]) - len(m["removed"]))
        m["rows"] = int(sum(s["count"] for s in m["shards"]))
        m["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        m["versions"] = _versions()
        _write_json(self.path / MANIFEST, m)
        self.manifest = m
        self.removed = np.asarray(sorted(m["removed"]), np.int64)
        self.store.close()
        self.store = FeatureStore([self.path / s["file"] for s in m["shards"]], self.config)

    def _prune_old_index(self, previous: str) -> None:
        """Keep the current and the previous FAISS generation (a reader may hold the previous manifest)."""
        keep = {self.manifest["index"]["file"], previous}
        for f in self.path.glob("index-*.faiss"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    def reindex(self, kind: str, params: dict[str, Any] | None = None) -> None:
        """Rebuild only the FAISS index with another kind, from the stored descriptors (no VGG pass)."""
        spec = resolve_kind(kind, self.config.dim, len(self.store), params)
        index = build_faiss(spec, self.store.global_descriptors())
        m = json.loads(json.dumps(self.manifest))
        gen = int(m["generation"]) + 1
        old = m["index"]["file"]
        m["index"] = {**spec.to_dict(), "file": f"index-{gen:06d}.faiss"}
        save_faiss(index, self.path / m["index"]["file"])
        self._commit(m, gen)
        self.spec, self.faiss = spec, index
        self._prune_old_index(old)

    def close(self) -> None:
        self.store.close()


def _split_pending(pending: list[tuple[list[dict[str, Any]], Descriptors | None]], size: int
                   ) -> tuple[list[tuple[list[dict[str, Any]], Descriptors | None]],
                              list[tuple[list[dict[str, Any]], Descriptors | None]]]:
    """Split buffered batches after ``size`` items, cutting a batch (and its descriptors) if needed."""
    taken, rest, n = [], [], 0
    for items, d in pending:
        if n >= size:
            rest.append((items, d))
            continue
        need = size - n
        if len(items) <= need:
            taken.append((items, d))
            n += len(items)
            continue
        head, tail = items[:need], items[need:]
        k = sum(it["ok"] for it in head)
        dh = dt = None
        if d is not None:
            dh = Descriptors(d.global_[:k], d.grid[:k], d.hist[:k], d.class_id[:k]) if k else None
            dt = Descriptors(d.global_[k:], d.grid[k:], d.hist[k:], d.class_id[k:]) if k < len(d) else None
        taken.append((head, dh))
        rest.append((tail, dt))
        n = size
    return taken, rest


def _wait_for(cond: Any, what: str, timeout: float = 7 * 24 * 3600.0) -> None:
    """Rank 0 waits for the other ranks' chunk files (they coordinate through the file system only)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise GalleryIndexError(f"timed out waiting for {what}")
        time.sleep(2.0)
