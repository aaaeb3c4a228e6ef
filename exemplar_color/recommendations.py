"""Automatic mode: which of a gallery's recommendations (best first) are usable references for a target --
existing, readable colour photos that are not the target itself -- and why the others were passed over."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .constants import WORKING_SIZE
from .errors import ExemplarColorError
from .io import ImageInput
from .photos import Photo, read_photo
from .uris import is_uri

__all__ = ["AUTO_CANDIDATES", "usable_references"]

AUTO_CANDIDATES = 10  # automatic mode looks this far down the gallery's ranking for a usable reference


def usable_references(source: ImageInput, target: Photo, recs: list[Any], n: int, size: int = WORKING_SIZE,
                      device: torch.device | str = "cpu") -> tuple[list[Photo], list[tuple[str, str]]]:
    """The ``n`` best-ranked recommendations that are existing, readable colour photos and not the target itself
    (same file, same bytes, or the same pixels) (fewer when the ranking runs out, at least one or an
    error), read at working size ``size`` on ``device``, and ``[(path, why)]`` of those passed over on the way. The colour original of a gray scan is
    a good reference, and is kept."""
    same_file, digest = None, None
    if isinstance(source, (str, os.PathLike)) and not is_uri(source):  # a URI's photo: judged by its pixels
        same_file = os.path.realpath(source)
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    passed: list[tuple[str, str]] = []
    found: list[Photo] = []
    for rec in recs:
        if not os.path.isfile(rec.path):  # deleted or moved since the index was built
            passed.append((rec.path, "missing (gone since the index was built; `exemplar-color index add GALLERY "
                                     "--index INDEX --remove-missing` forgets it)"))
            continue
        if same_file is not None and os.path.realpath(rec.path) == same_file:
            passed.append((rec.path, "the target itself"))
            continue
        if digest is not None and hashlib.sha256(Path(rec.path).read_bytes()).hexdigest() == digest:
            passed.append((rec.path, "a copy of the target"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                photo = read_photo(rec.path, size, device)
        except ExemplarColorError as e:
            passed.append((rec.path, f"unreadable: {getattr(e, 'problem', e)}"))
            continue
        if not photo.colour:
            passed.append((rec.path, "grayscale"))
            continue
        if photo.size == target.size and photo.pixels.shape == target.pixels.shape and \
                float((photo.pixels - target.pixels).abs().mean()) < 2 / 255:
            passed.append((rec.path, "a near-duplicate of the target"))
            continue
        found.append(photo)
        if len(found) == n:
            break
    if found:
        return found, passed
    why = "; ".join(f"{Path(p).name}: {w}" for p, w in passed[:3])
    raise ExemplarColorError(f"{target.name}: none of the gallery's {len(recs)} best matches is a usable colour "
                             f"reference ({why}{'; ...' if len(passed) > 3 else ''}); give one with --reference")
