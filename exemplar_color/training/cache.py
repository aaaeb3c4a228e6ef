"""HDF5 cache of the colorization sub-net's precomputed inputs, one record per training pair.

The correspondence is the expensive part of training (seconds per pair on a CPU), so it runs once:

``DIR/cache.json``
    The plan: format version, the configuration that produced the records (VGG-19 variant and the
    SHA-256 of its weight file, levels, working size, matcher method), the pair list with its digest,
    and how pairs are split into shards. Opening a cache with other levels, another backbone or another
    size is refused with :class:`ConfigMismatchError`.
``DIR/shard-00000.h5`` ...
    Shard ``i`` holds pairs ``[i * shard_size, (i + 1) * shard_size)``: datasets ``l`` (L, 0..100),
    ``ab`` (ground truth), ``warped_ab`` (R'_ab), ``cycle_ab`` (T'_ab) as float16 and ``similarity``
    (forward then bidirectional cosine, deepest level first) quantised to 8 bits as in the released
    system, plus ``pair_index`` tying each row to its pair. A cache built with ``features`` also holds
    the target's own unit-normalised VGG-19 features at those levels (``feat_relu5_1`` ..., float16): the
    matcher computes them anyway, and the hypercolumn sub-net reads them. Pairs whose images are missing, corrupt or
    grayscale are skipped; the shard's ``failures`` attribute names each with the reason.
``DIR/mirrored-00000.h5`` ... (optional): the mirrored targets' features, row for row (:mod:`.mirrored`).

A shard is written to a temporary file and renamed when complete, so a build that is interrupted
resumes at the first missing shard, and shards split across ranks (``rank``/``world``) build in
parallel without coordination. Records are read at random, one chunk per record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch

from ..artifacts import (BuildReport, ShardPlan, file_sha256, known_fields, read_manifest, refuse_differences,
                         write_manifest)
from ..backbone import VGG19Features
from ..color import rgb_to_lab
from ..errors import ConfigMismatchError, ExemplarColorError, ImageError
from ..io import atomic_write
from ..runtime import resolve_device
from ..backbone.spec import LEVEL_CHANNELS, LEVEL_STRIDE, LEVELS, Variant
from ..backbone.weights import resolve_weights
from .pairs import PairManifest

__all__ = ["CacheConfig", "CacheError", "PairCache", "CacheDataset", "build_cache", "decode", "FIELDS",
           "FEATURE_PREFIX", "MIRROR_PREFIX"]

log = logging.getLogger(__name__)

FORMAT = "exemplar_color-pair-cache"
VERSION = 1
FIELDS = ("l", "ab", "warped_ab", "cycle_ab", "similarity")
FEATURE_PREFIX = "feat_"  # + level name: the target's own features, when the cache holds them
MIRROR_PREFIX = "mirror_"  # + a feature field: the same features of the target mirrored left-right
_SIM_LEVELS = 255.0


class CacheError(ExemplarColorError, RuntimeError):
    """A cache is incomplete or damaged."""


@dataclass(frozen=True)
class CacheConfig:
    """What produced a cache's records; a cache is only used with exactly this configuration."""

    levels: tuple[str, ...]
    variant: Variant
    weights_sha256: str  # of the weight file: ties the records to the backbone
    size: int
    method: str = "fast"
    context_border: int = 0  # the matcher's (caches built before they were recorded had neither)
    position_prior: float = 0.0
    coherence_margin: float = 0.0  # and neither this (nor relu4_1's narrower search, which came with it)
    features: tuple[str, ...] = ()  # levels whose target features are stored (older caches: none)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CacheConfig":
        d = known_fields(cls, d, "cache settings")
        return cls(**{**d, "levels": tuple(d["levels"]), "features": tuple(d.get("features", ()))})

    def check(self, where: str, **expected: Any) -> None:
        """Raise :class:`ConfigMismatchError` naming every key of ``expected`` (not None) that differs."""
        refuse_differences(where, self.to_dict(), expected, have_name="cache has",
                           built="cache was built with another configuration",
                           fix="build a new cache for this configuration")


def _plan(manifest: PairManifest, config: CacheConfig, shard_size: int) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "pairs_digest": manifest.digest(),
            "shard_size": shard_size, "num_shards": -(-len(manifest) // shard_size), "root": str(manifest.root),
            "pairs": [[p.target, p.reference, p.split] for p in manifest.pairs]}


def _shards(root: Path, plan: dict[str, Any], rank: int = 0, world: int = 1) -> ShardPlan:
    """The plan's shards: shard ``i`` holds pairs ``[i * shard_size, (i + 1) * shard_size)``."""
    stamp = {"pairs_digest": plan["pairs_digest"], "config": json.dumps(plan["config"], sort_keys=True)}
    return ShardPlan(root, len(plan["pairs"]), int(plan["shard_size"]), "shard-{:05d}.h5", stamp, "shard", rank,
                     world)


def _read_plan(root: Path) -> dict[str, Any]:
    path = root / "cache.json"
    if not path.is_file():
        raise CacheError(f"{root}: not a pair cache (no cache.json); build one with `exemplar-color cache build`")
    return read_manifest(path, format=FORMAT, version=VERSION, error=CacheError, what="cache manifest")


def _write_shard(path: Path, stamp: dict[str, Any], rows: dict[str, list[np.ndarray]],
                 pair_index: list[int], failures: list[tuple[int, str]], nsim: int, size: int,
                 features: Sequence[str] = ()) -> None:
    shapes = {"l": (1, size), "ab": (2, size), "warped_ab": (2, size), "cycle_ab": (2, size),
              "similarity": (nsim, size)}
    shapes.update({FEATURE_PREFIX + lv: (LEVEL_CHANNELS[lv], size // LEVEL_STRIDE[lv]) for lv in features})
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n = len(pair_index)
            for name, (ch, side) in shapes.items():
                dtype = np.uint8 if name == "similarity" else np.float16
                data = np.stack(rows[name]) if n else np.zeros((0, ch, side, side), dtype)
                f.create_dataset(name, data=data, dtype=dtype, chunks=(1, ch, side, side) if n else None)
            f.create_dataset("pair_index", data=np.asarray(pair_index, dtype=np.int64))
            f.attrs.update(stamp)
            f.attrs["failures"] = json.dumps([[i, r] for i, r in failures])


def _describe(matcher: Any, manifest: PairManifest, ids: Sequence[int], size: int, batch_size: int,
              device: torch.device, bar: Any, features: Sequence[str] = (),
              ) -> tuple[dict[str, list[np.ndarray]], list[int], list[tuple[int, str]]]:
    """The sub-net inputs of the pairs ``ids`` (batch by batch) and the pairs that could not be read."""
    rows: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS + tuple(FEATURE_PREFIX + lv for lv in features)}
    done: list[int] = []
    failures: list[tuple[int, str]] = []
    for b in range(0, len(ids), batch_size):
        good, tgts, refs = [], [], []
        for i in ids[b:b + batch_size]:
            try:
                t, r = manifest.squares(i, size)
            except ImageError as e:
                failures.append((i, str(e)))
                log.warning("skipped pair %d: %s", i + 1, e)
                continue
            good.append(i)
            tgts.append(t)
            refs.append(r)
        if good:
            t_lab = rgb_to_lab(torch.stack(tgts).to(device))
            r_lab = rgb_to_lab(torch.stack(refs).to(device))
            n = len(good)
            with torch.inference_mode():  # one backbone pass for both images, as Matcher.match does
                both = matcher.features(torch.cat([t_lab[:, :1], r_lab[:, :1]]))
                ft = {lv: f[:n] for lv, f in both.items()}
                c = matcher.match_features(ft, {lv: f[n:] for lv, f in both.items()}, r_lab, (size, size))
                cycle = c.cycle_warp(t_lab[:, 1:])
            sim = (c.similarity.clamp(0, 1) * _SIM_LEVELS).round().to(torch.uint8)
            own = [(FEATURE_PREFIX + lv, ft[lv]) for lv in features]
            for name, v in [("l", t_lab[:, :1]), ("ab", t_lab[:, 1:]), ("warped_ab", c.warped_ab),
                            ("cycle_ab", cycle), ("similarity", sim)] + own:
                arr = v.cpu().numpy() if name == "similarity" else v.float().cpu().numpy().astype(np.float16)
                rows[name].extend(arr)
            done.extend(good)
        bar.update(len(ids[b:b + batch_size]))
    return rows, done, failures


def build_cache(manifest: PairManifest, out: str | os.PathLike, *, levels: Sequence[str] = ("relu5_1", "relu4_1",
                "relu3_1", "relu2_1", "relu1_1"), size: int = 256, variant: Variant = "caffe",
                vgg_weights: str | os.PathLike | None = None, method: str = "fast", shard_size: int = 256,
                batch_size: int = 8, device: str | torch.device = "cpu", rank: int = 0, world: int = 1,
                progress: bool = True, features: Sequence[str] = (), mirrored: bool = False) -> BuildReport:
    """Compute and store the sub-net inputs of every pair; resumes where a previous build stopped.

    Args:
        manifest: the pairs; their order fixes record and shard numbering.
        out: the cache folder (created).
        levels, variant, vgg_weights, method: the correspondence configuration (see
            :class:`~exemplar_color.correspondence.Matcher`).
        size: working size: images are resized (short side) and centre-cropped to ``size x size``.
        shard_size: pairs per shard file (the unit of resumption and of parallel building).
        batch_size: pairs matched together.
        device: ``auto``, ``cpu``, ``cuda``, ... (:func:`~exemplar_color.runtime.resolve_device`).
        rank, world: build only shards ``i`` with ``i % world == rank`` (one process per rank).
        progress: a progress bar on stderr.
        features: also store the target's own matcher features at these levels (a subset of ``levels``;
            the hypercolumn sub-net needs them).
        mirrored: also store those features of every target mirrored left-right (companion files, which a
            finished cache gains when built again with this set), so training can mirror records exactly.

    Returns:
        A :class:`~exemplar_color.artifacts.BuildReport` in pairs (``written``: records stored now) and
        shards.

    Raises:
        ConfigMismatchError: ``out`` already holds a cache of other pairs or another configuration.
    """
    from tqdm import tqdm

    from ..correspondence import Matcher

    if size % 8:
        raise ValueError(f"size must be a multiple of 8, got {size}")
    features = tuple(sorted(features, key=LEVELS.index, reverse=True))
    if set(features) - set(levels):
        raise ValueError(f"feature levels {sorted(set(features) - set(levels))} are not among the matched levels "
                         f"{list(levels)}")
    if mirrored and not features:
        raise ValueError("mirrored=True stores mirrored target features: give the feature levels too")
    if features and size % max(LEVEL_STRIDE[lv] for lv in features):
        raise ValueError(f"size must be a multiple of {max(LEVEL_STRIDE[lv] for lv in features)} to store "
                         f"features at {list(features)}, got {size}")
    t0 = time.perf_counter()
    root = Path(out)
    device = resolve_device(device)
    weights = resolve_weights(vgg_weights, variant)
    backbone = VGG19Features(levels, weights=weights, variant=variant).to(device)
    # float32 whatever the machine: the records must not depend on which CPU or GPU built them
    matcher = Matcher(backbone, method=method, precision="float32")  # type: ignore[arg-type]
    config = CacheConfig(matcher.levels, variant, file_sha256(weights), size, method, matcher.context_border,
                         matcher.position_prior, matcher.coherence_margin, features)
    plan = _plan(manifest, config, shard_size)
    if (root / "cache.json").is_file():
        old = _read_plan(root)
        CacheConfig.from_dict(old["config"]).check(str(root), **config.to_dict())
        if old["pairs_digest"] != plan["pairs_digest"] or old["shard_size"] != shard_size:
            raise ConfigMismatchError(f"{root}: holds a cache of other pairs (or another shard size); "
                                      f"use a new folder for this manifest")
    else:
        write_manifest(root / "cache.json", plan)
    shards = _shards(root, plan, rank, world)
    todo = shards.todo()
    report = BuildReport(item="pair", total=len(manifest), parts_present=len(shards.mine()) - len(todo))
    report.reused = sum(len(shards.items(i)) for i in shards.mine() if i not in todo)
    bar = tqdm(total=sum(len(shards.items(i)) for i in todo), unit="pair", disable=not progress, file=sys.stderr,
               desc="cache")
    try:
        for s in todo:
            rows, done, failures = _describe(matcher, manifest, list(shards.items(s)), size, batch_size, device, bar,
                                             features)
            _write_shard(shards.path(s), shards.stamp(s), rows, done, failures, 2 * len(config.levels), size,
                         features)
            report.computed += len(done)
            report.parts_built += 1
            report.failures.extend(failures)
    finally:
        bar.close()
    if mirrored:
        from .mirrored import build_mirrored

        build_mirrored(matcher, manifest, shards, size, features, batch_size, device, progress)
    report.written = report.computed
    report.seconds = report.extract_seconds = time.perf_counter() - t0
    return report


class PairCache:
    """Read side of a cache: the plan, the records of every shard, and a per-process HDF5 handle pool.

    Args:
        root: the cache folder.
        levels, variant, size, weights_sha256, method: if given, must equal the cache's configuration,
            else :class:`ConfigMismatchError` names the difference.
        allow_partial: read the shards that exist instead of refusing an unfinished build.
    """

    def __init__(self, root: str | os.PathLike, *, levels: Sequence[str] | None = None,
                 variant: Variant | None = None,
                 size: int | None = None, weights_sha256: str | None = None, method: str | None = None,
                 allow_partial: bool = False):
        self.root = Path(root)
        self.plan = _read_plan(self.root)
        self.config = CacheConfig.from_dict(self.plan["config"])
        self.config.check(str(self.root), levels=levels, variant=variant, size=size, weights_sha256=weights_sha256,
                          method=method)
        self.pairs: list[tuple[str, str, str]] = [tuple(p) for p in self.plan["pairs"]]  # type: ignore[misc]
        self.records: list[tuple[int, int]] = []  # (shard, row)
        self.pair_index: list[int] = []
        self.failures: list[tuple[int, str]] = []
        self.shards = _shards(self.root, self.plan)
        missing = []
        for s in range(self.plan["num_shards"]):
            path = self.shards.path(s)
            if not path.is_file():
                missing.append(s)
                continue
            try:
                with h5py.File(path, "r") as f:
                    shard_config = json.loads(f.attrs["config"])
                    idx = f["pair_index"][:].tolist()
                    failures = [(int(i), str(r)) for i, r in json.loads(f.attrs["failures"])]
            except (OSError, KeyError, ValueError) as e:
                raise CacheError(f"{path}: damaged shard ({type(e).__name__}: {e}); delete it and run "
                                 f"`exemplar-color cache build` again to rebuild it") from None
            if shard_config != self.plan["config"]:
                raise ConfigMismatchError(f"{path}: shard built with another configuration than cache.json")
            self.failures += failures
            self.records += [(s, r) for r in range(len(idx))]
            self.pair_index += idx
        self.missing_shards = missing
        if missing and not allow_partial:
            raise CacheError(f"{self.root}: cache incomplete ({len(missing)} of {self.plan['num_shards']} shards "
                             f"missing, e.g. {self.shards.path(missing[0]).name}); run "
                             f"`exemplar-color cache build` again to finish it")
        from .mirrored import companions

        self.companions = companions(self.shards)
        #: whether every shard has its mirrored target features (``build_cache(..., mirrored=True)``)
        self.mirrored = bool(self.config.features) and not missing and not self.companions.missing()
        self._files: dict[Path, h5py.File] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own handles
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    @property
    def levels(self) -> tuple[str, ...]:
        return self.config.levels

    def records_of(self, pairs: Sequence[tuple[str, str]] | None = None, split: str | None = None) -> list[int]:
        """Record numbers whose pair is in ``pairs`` (target, reference) and/or in ``split``."""
        wanted = None if pairs is None else {tuple(p) for p in pairs}
        out = []
        for rec, pi in enumerate(self.pair_index):
            t, r, sp = self.pairs[pi]
            if (wanted is None or (t, r) in wanted) and (split is None or sp == split):
                out.append(rec)
        return out

    def _file(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # forked: handles are not shared across processes
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = h5py.File(path, "r")
        return f

    def read(self, record: int, fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One record (``fields`` of it, default :attr:`fields`; :attr:`mirrored_fields` too on request) in
        its stored dtypes (float16, similarity uint8); see :func:`decode`."""
        shard, row = self.records[record]
        out = {}
        for k in fields or self.fields:
            if k.startswith(MIRROR_PREFIX) and not self.mirrored:
                raise CacheError(f"{self.root}: no mirrored target features; build the cache again with "
                                 f"`exemplar-color cache build ... --mirrored` to add them")
            out[k] = self._file((self.companions if k.startswith(MIRROR_PREFIX) else self.shards).path(shard))[k][row]
        return out

    @property
    def fields(self) -> tuple[str, ...]:
        """The datasets of every record: :data:`FIELDS`, then the stored target features."""
        return FIELDS + tuple(FEATURE_PREFIX + lv for lv in self.config.features)

    @property
    def mirrored_fields(self) -> tuple[str, ...]:
        """The target features of the mirrored photo, when the cache holds them (else none)."""
        return tuple(MIRROR_PREFIX + FEATURE_PREFIX + lv for lv in self.config.features) if self.mirrored else ()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


def decode(batch: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Stored dtypes -> ``dtype``: similarity back to cosine in [0, 1]; L, ab in Lab units."""
    out = {k: v.to(dtype) for k, v in batch.items() if k in FIELDS or k.startswith(FEATURE_PREFIX)}
    out["similarity"] = out["similarity"] / _SIM_LEVELS
    return out


class CacheDataset(torch.utils.data.Dataset):
    """Records of a :class:`PairCache` as a map-style dataset (raw dtypes; decode on the device)."""

    def __init__(self, cache: PairCache, records: Sequence[int] | None = None, fields: Sequence[str] | None = None):
        self.cache = cache
        self.records = list(range(len(cache))) if records is None else list(records)
        self.fields = fields

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.cache.read(self.records[i], self.fields).items()}
