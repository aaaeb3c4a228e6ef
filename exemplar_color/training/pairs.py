"""Training pairs: a manifest of (target, reference) image paths, and rules that choose references.

Manifest formats (users write these by hand for their own data too):

- CSV with a header ``target,reference[,split]``; ``split`` is ``train`` (default) or ``val``.
- JSON: ``{"root": "...", "pairs": [{"target": ..., "reference": ..., "split": ...}, ...]}`` or just the list.

Paths are relative to a root folder (``--root``; else the JSON's ``root``, relative to the manifest; else
the manifest's folder) and must stay inside it: absolute paths and ``..`` escapes are refused, so a
manifest from elsewhere cannot make the tools read arbitrary files.

:func:`make_pairs` applies a pluggable :class:`PairingRule`: :class:`SameClass` (another image of the
target's class, from a ``labels.csv``), :class:`NearestDescriptor` (the most similar other image by a
global VGG-19 descriptor of its luminance), or :class:`FirstOf` to chain them. The published mix of
retrieved, same-class and related-class references, drawn from the gallery index, is
:mod:`.references`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import torch
import torch.nn.functional as F

from ..backbone import VGG19Features
from ..color import l_to_gray, rgb_to_lab
from ..errors import ExemplarColorError, ImageError
from ..io import atomic_write
from .images import load_square

__all__ = ["Pair", "PairManifest", "ManifestError", "PairingRule", "SameClass", "NearestDescriptor", "FirstOf",
           "read_labels", "make_pairs", "SPLITS"]

SPLITS = ("train", "val")


class ManifestError(ExemplarColorError, ValueError):
    """A pair manifest is malformed or names paths outside its root."""


@dataclass(frozen=True)
class Pair:
    """One training pair; paths relative to the manifest's root, with ``/`` separators."""

    target: str
    reference: str
    split: str = "train"


def _check_rel(root: Path, rel: str, where: str) -> str:
    rel = rel.strip().replace("\\", "/")
    if not rel:
        raise ManifestError(f"{where}: empty path")
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":") or Path(rel).is_absolute():
        raise ManifestError(f"{where}: {rel!r} is absolute; paths must be relative to the root {root}")
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise ManifestError(f"{where}: {rel!r} points outside the root {root}")
    return rel


class PairManifest:
    """An ordered list of :class:`Pair` under a root folder.

    Example:
        >>> m = PairManifest("/data", [Pair("a.jpg", "b.jpg")])
        >>> m.path(m.pairs[0].target)
        PosixPath('/data/a.jpg')
    """

    def __init__(self, root: str | os.PathLike, pairs: Iterable[Pair], source: str = "<memory>"):
        self.root = Path(root).expanduser().resolve()
        self.source = source
        self.pairs: list[Pair] = []
        for i, p in enumerate(pairs):
            where = f"{source}: pair {i + 1}"
            if p.split not in SPLITS:
                raise ManifestError(f"{where}: split {p.split!r} must be one of {SPLITS}")
            self.pairs.append(Pair(_check_rel(self.root, p.target, where), _check_rel(self.root, p.reference, where),
                                   p.split))
        if not self.pairs:
            raise ManifestError(f"{source}: no pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def squares(self, i: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``i``'s target and reference as ``size`` px training squares; a grayscale photo is refused
        (:class:`~exemplar_color.errors.ImageError`: no colour to learn from or to transfer)."""
        pair = self.pairs[i]
        (target, t_gray), (reference, r_gray) = (load_square(self.path(rel), size) for rel in (pair.target,
                                                                                                pair.reference))
        if t_gray or r_gray:
            which = pair.target if t_gray else pair.reference
            raise ImageError(self.path(which), "grayscale image: no colour to learn from or to transfer")
        return target, reference

    def split(self, name: str) -> list[int]:
        """Indices of the pairs in split ``name``."""
        return [i for i, p in enumerate(self.pairs) if p.split == name]

    def digest(self) -> str:
        """SHA-256 of the pair list (not the root): ties a cache to the exact pairs it was built from."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(f"{p.target}\0{p.reference}\0{p.split}\n".encode())
        return h.hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> "PairManifest":
        """Read a CSV or JSON manifest (by extension; ``.json`` is JSON, anything else CSV)."""
        p = Path(path)
        if not p.is_file():
            raise ManifestError(f"{p}: pair manifest not found")
        text = p.read_text(encoding="utf-8-sig")
        json_root = None
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{p}: not valid JSON ({e})") from None
            if isinstance(data, dict):
                json_root, data = data.get("root"), data.get("pairs")
            if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
                raise ManifestError(f"{p}: expected a list of {{target, reference}} objects")
            rows = data
        else:
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or not {"target", "reference"} <= {f.strip() for f in reader.fieldnames}:
                raise ManifestError(f"{p}: CSV needs a header with 'target' and 'reference' columns, got "
                                    f"{reader.fieldnames}")
            rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
        pairs = []
        for i, r in enumerate(rows):
            t, ref = r.get("target"), r.get("reference")
            if not isinstance(t, str) or not isinstance(ref, str):
                raise ManifestError(f"{p}: pair {i + 1} lacks a target or reference path")
            pairs.append(Pair(t, ref, (r.get("split") or "train").strip()))
        if root is None:
            root = p.parent / json_root if json_root else p.parent
        return cls(root, pairs, source=str(p))

    def save(self, path: str | os.PathLike, *, with_root: bool = False) -> Path:
        """Write atomically as CSV, or JSON if ``path`` ends with ``.json`` (root recorded if ``with_root``)."""
        p = Path(path)
        with atomic_write(p) as tmp:
            if p.suffix.lower() == ".json":
                data: object = [asdict(x) for x in self.pairs]
                if with_root:
                    data = {"root": os.path.relpath(self.root, p.parent.resolve()), "pairs": data}
                tmp.write_text(json.dumps(data, indent=1) + "\n")
            else:
                with open(tmp, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["target", "reference", "split"])
                    w.writerows([x.target, x.reference, x.split] for x in self.pairs)
        return p


class PairingRule(Protocol):
    """Chooses a reference for each image: ``rule(paths) -> [index of its reference, or None]``."""

    def __call__(self, paths: Sequence[Path]) -> list[int | None]: ...


def read_labels(path: str | os.PathLike, column: str = "class_index") -> dict[str, str]:
    """``file -> class`` from a ``labels.csv`` such as the ImageNet samples' (columns ``file``, ``column``)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {r["file"]: r[column] for r in csv.DictReader(f)}


@dataclass
class SameClass:
    """Reference = another image of the same class (seeded random choice); ``None`` for a class of one."""

    labels: dict[str, str]
    seed: int = 0

    def __call__(self, paths: Sequence[Path]) -> list[int | None]:
        by_class: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            c = self.labels.get(p.name)
            if c is not None:
                by_class.setdefault(c, []).append(i)
        rng = random.Random(self.seed)
        out: list[int | None] = [None] * len(paths)
        for members in by_class.values():
            for i in members:
                others = [j for j in members if j != i]
                out[i] = rng.choice(others) if others else None
        return out


@dataclass
class NearestDescriptor:
    """Reference = the most similar other image by a global descriptor of its luminance.

    The descriptor is the channel mean and standard deviation of the backbone's deepest level (gray
    input, so colour plays no part), L2-normalised; neighbours by exact cosine (one matrix product).
    Needs no gallery index, and works with any weight file the backbone accepts.
    """

    backbone: VGG19Features
    size: int = 128
    batch: int = 16

    def descriptors(self, paths: Sequence[Path]) -> tuple[torch.Tensor, list[bool]]:
        """``(N, D)`` unit descriptors, and which images could be read (unreadable ones get zeros)."""
        level = self.backbone.levels[0]
        device = next(self.backbone.parameters()).device
        out, ok = [], []
        for s in range(0, len(paths), self.batch):
            imgs = []
            for p in paths[s:s + self.batch]:
                try:
                    imgs.append(load_square(p, self.size)[0])
                    ok.append(True)
                except ImageError:
                    imgs.append(torch.zeros(3, self.size, self.size))
                    ok.append(False)
            gray = l_to_gray(rgb_to_lab(torch.stack(imgs))[:, :1]).to(device)
            with torch.inference_mode():
                f = self.backbone(gray)[level].float()
            out.append(F.normalize(torch.cat([f.mean((2, 3)), f.std((2, 3))], 1), dim=1).cpu())
        return torch.cat(out), ok

    def __call__(self, paths: Sequence[Path]) -> list[int | None]:
        if len(paths) < 2:
            return [None] * len(paths)
        d, ok = self.descriptors(paths)
        sim = d @ d.T
        bad = ~torch.tensor(ok)
        sim.fill_diagonal_(-float("inf"))
        sim[:, bad] = -float("inf")
        best = sim.argmax(1).tolist()
        return [b if good else None for b, good in zip(best, ok)]


@dataclass
class FirstOf:
    """Chain rules: each image takes the first rule's choice that is not ``None``."""

    rules: Sequence[PairingRule]

    def __call__(self, paths: Sequence[Path]) -> list[int | None]:
        out: list[int | None] = [None] * len(paths)
        for rule in self.rules:
            if all(r is not None for r in out):
                break
            out = [mine if mine is not None else theirs for mine, theirs in zip(out, rule(paths))]
        return out


def make_pairs(root: str | os.PathLike, images: Sequence[str | os.PathLike], rule: PairingRule, *,
               val_fraction: float = 0.0, seed: int = 0) -> PairManifest:
    """Apply ``rule`` to ``images`` (paths under ``root``) and hold out ``val_fraction`` of the targets.

    Images for which the rule finds no reference are left out. The held-out targets are drawn with
    ``seed``. Only targets are held out: a validation pair's reference may be a training image, as at
    test time, where references come from a gallery.
    """
    root = Path(root).expanduser().resolve()
    paths = [Path(p) if Path(p).is_absolute() else root / p for p in images]
    refs = rule(paths)
    rel = [p.resolve().relative_to(root).as_posix() for p in paths]
    keep = [i for i, r in enumerate(refs) if r is not None]
    rng = random.Random(seed)
    n_val = round(val_fraction * len(keep))
    val = set(rng.sample(keep, n_val)) if n_val else set()
    pairs = [Pair(rel[i], rel[refs[i]], "val" if i in val else "train") for i in keep]  # type: ignore[index]
    return PairManifest(root, pairs, source=f"pairs under {root}")
