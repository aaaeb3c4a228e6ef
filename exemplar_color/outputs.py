"""Output planning: every command resolves all its outputs before any work, and refuses in one line.

Rules (the README's *Command line* section states them for users):

- ``-o`` is a file when it ends in an image extension (one target file only), a folder otherwise (an
  existing folder, a name ending in ``/``, or a name without an extension); any other extension is refused.
- Folder outputs keep each target folder's layout, as ``NAME.png``; two inputs that would map to one output
  (``photo.jpg`` and ``photo.png``, or the same name in two input folders) are refused, never merged.
- No output may be an input (a target, the reference); the output folder may not be an input folder, and
  an output folder *inside* an input folder is skipped when that folder is scanned.
- An existing file is never replaced unless ``--overwrite`` is given (:func:`refuse_existing`).
- A folder run keeps a job record (:class:`JobRecord`, ``OUT/.exemplar-color-job.json``: its references and
  settings); ``--resume`` continues only the same job, as ``colorize-video --resume`` does.
- Output locations must be writable: checked by creating and removing a temporary file in the nearest
  existing folder, before any model is loaded.

Usage mistakes raise :class:`~exemplar_color.errors.UsageError` (exit 2); an unwritable location raises
:class:`~exemplar_color.errors.OutputError` (exit 1).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ConfigMismatchError, OutputError, UsageError
from .io import IMAGE_EXTENSIONS, atomic_write, list_images, save_image, temp_leftovers
from .uris import is_uri, uri_stem

__all__ = ["Job", "plan_colorize", "check_output_file", "check_output_folder", "check_writable",
           "refuse_existing", "remove_leftovers", "JobRecord", "check_working_size", "SAVE_EXTENSIONS"]

SAVE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


@dataclass(frozen=True)
class Job:
    """One target and everything it writes: ``sides`` first (each atomically), ``output`` last."""

    target: Path | str  # a local path, or a URI (str) that the worker reads (exemplar_color.uris)
    output: Path
    sides: tuple[Path, ...] = ()

    @property
    def outputs(self) -> tuple[Path, ...]:
        return (*self.sides, self.output)

    def done(self) -> bool:
        """Complete only when every output exists (the main image is written last)."""
        return all(p.is_file() for p in self.outputs)


def _key(p: Path | str) -> str:
    return p if is_uri(p) else os.path.normcase(os.path.realpath(p))


def _inside(child: Path, parent: Path) -> bool:
    c, p = _key(child), _key(parent)
    return c != p and c.startswith(p.rstrip(os.sep) + os.sep)


def side_path(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}_{tag}.png")


def plan_colorize(targets: Sequence[str], out: str, side_tags: Sequence[str] = (),
                  inputs: Iterable[str | os.PathLike] = ()) -> list[Job]:
    """The jobs of ``colorize TARGET... -o OUT``; refuses (UsageError) whatever could lose or overwrite a file.

    ``inputs``: other files the run reads (the reference), which no output may replace.
    """
    out_path = Path(out)
    for t in targets:
        if not is_uri(t) and not Path(t).exists():  # a URI is read (and reported missing) by its worker
            raise UsageError(f"{t}: no such file or folder")
    folders = [Path(t) for t in targets if not is_uri(t) and Path(t).is_dir()]
    files: list[Path | str] = [t if is_uri(t) else Path(t) for t in targets if is_uri(t) or not Path(t).is_dir()]
    n = len(targets)
    suffix = out_path.suffix.lower()
    if out_path.is_dir():
        as_file = False
    elif out_path.exists():  # an existing file: only a single target file may replace it
        if folders or n > 1:
            raise UsageError(f"-o {out}: an existing file, but there are several targets; give a folder for -o")
        as_file = True
    elif out.endswith(("/", os.sep)) or not suffix:
        as_file = False
    elif suffix in IMAGE_EXTENSIONS:
        as_file = True
        if folders or n > 1:
            what = "a folder" if folders and n == 1 else f"{n} targets"
            raise UsageError(f"-o {out} names one image file, but the input is {what}; give a folder for -o "
                             f"(a name without extension, or ending in /)")
    else:
        raise UsageError(f"-o {out}: {out_path.suffix!r} is not an image extension; name a .png, .jpg, .tif, "
                         f".webp or .bmp file, or end the name with / for a folder")
    if as_file and suffix not in SAVE_EXTENSIONS:
        raise UsageError(f"-o {out}: cannot write {suffix} images; use .png, .tif, .webp, .bmp or .jpg")

    def job(target: Path | str, output: Path) -> Job:
        return Job(target, output, tuple(side_path(output, tag) for tag in side_tags))

    if as_file:
        jobs = [job(files[0], out_path)]
    else:
        jobs = []
        for folder in folders:
            if _key(folder) == _key(out_path):
                raise UsageError(f"-o {out} is the input folder itself; outputs would mix with the photos (and be "
                                 f"colorized again next time); give another folder")
            skip = out_path if _inside(out_path, folder) else None
            for f in list_images(folder):
                if skip is not None and _inside(f, skip):
                    continue  # the output folder inside the input folder: never an input
                jobs.append(job(f, out_path / f.relative_to(folder).with_suffix(".png")))
        for f in files:
            if isinstance(f, str):
                jobs.append(job(f, out_path / (uri_stem(f) + ".png")))
                continue
            if _key(f.parent) == _key(out_path):
                raise UsageError(f"-o {out} is the folder of the input {f}; outputs would mix with the photos; "
                                 f"give another folder")
            jobs.append(job(f, out_path / (f.stem + ".png")))
    _refuse_collisions(jobs, [Path(p) for p in inputs])
    return jobs


def _refuse_collisions(jobs: list[Job], others: list[Path]) -> None:
    sources = {_key(j.target): j.target for j in jobs} | {_key(p): p for p in others}
    seen: dict[str, Job] = {}
    clashes: list[str] = []
    for j in jobs:
        for o in j.outputs:
            k = _key(o)
            if k in sources:
                raise UsageError(f"{o} would overwrite the input {sources[k]}; give another output")
            if k in seen:
                clashes.append(f"{seen[k].target} and {j.target} would both be written to {o}")
            seen.setdefault(k, j)
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(f"{clashes[0]}{more}; rename one, or colorize them into separate folders")


def refuse_existing(paths: Iterable[Path], option: str = "-o", why: str = "") -> None:
    """Refuse (UsageError, exit 2) when any of ``paths`` already exists: nothing a user owns is replaced
    without ``--overwrite``. Names the first one and counts the others."""
    there = [p for p in paths if os.path.lexists(p)]
    if there:
        more = f" (and {len(there) - 1} more output{'s' if len(there) > 2 else ''})" if len(there) > 1 else ""
        raise UsageError(f"{there[0]} already exists{more}{why}; nothing was written: add --overwrite to replace "
                         f"{'them' if more else 'it'}, or choose another {option}")


class JobRecord:
    """What a folder run is (references and settings), kept beside its outputs (``OUT/.exemplar-color-job.json``)
    from before its first output on, so that ``--resume`` continues only the same job: the folder-run
    counterpart of the video work folder's ``job.json`` (:mod:`exemplar_color.video.resume`)."""

    NAME = ".exemplar-color-job.json"

    def __init__(self, folder: str | os.PathLike, job: dict):
        self.path = Path(folder) / self.NAME
        self.job = json.loads(json.dumps({"format": 1, **job}))  # as it reads back

    def check(self, existing: Sequence[Path]) -> None:
        """For ``--resume``: the earlier run must have been this job (ConfigMismatchError naming what
        differs), and outputs that exist with no record are not known to be a run's (UsageError)."""
        if not self.path.is_file():
            if existing:
                refuse_existing(existing, "-o", why=f"; it holds no record of an earlier run ({self.path.name}), "
                                                    "so --resume cannot tell they are this job's")
            return
        try:
            before = json.loads(self.path.read_text())
        except (OSError, ValueError):
            raise ConfigMismatchError(f"{self.path}: unreadable job record; use --overwrite to start over") from None
        diff = [f"{k}: {before.get(k)!r} then, {v!r} now" for k, v in self.job.items() if before.get(k) != v]
        if diff:
            raise ConfigMismatchError(f"{self.path.parent}: the earlier run there was another job "
                                      f"({'; '.join(diff)}); repeat its settings, use --overwrite to start over, "
                                      f"or choose another -o")

    def write(self) -> None:
        with atomic_write(self.path) as tmp:
            tmp.write_text(json.dumps(self.job, indent=1))


def check_working_size(size: int, photos: Iterable[Path], default: int = 256) -> None:
    """A working size above ``default`` that is also above every photo's own short side would only upsample
    them (``--size 2048`` on a 256 px photo: minutes and ~11 GB for nothing): refused (UsageError), read from
    the headers before any model. Unreadable photos are left to the run, which reports them."""
    if size <= default:
        return
    from PIL import Image

    largest, name = 0, None
    for p in photos:
        try:
            with Image.open(p) as img:
                side = min(img.size)
        except Exception:  # noqa: BLE001 - not an image, corrupt: the run says which
            continue
        if side > largest:
            largest, name = side, p
    if largest and size > largest:
        raise UsageError(f"--size {size} is above the short side of the largest photo ({name}: {largest} px): it "
                         f"would only upsample it, at a great cost in time and memory; give --size {largest} or less")


def _existing_ancestor(d: Path) -> Path:
    d = Path(os.path.abspath(d))
    while not d.exists():
        d = d.parent
    return d


def check_writable(folders: Iterable[Path]) -> None:
    """Each folder (created later if missing) can receive files: a temporary file is created and removed in
    it, or in its nearest existing ancestor. Raises OutputError (or UsageError when a file is in the way)."""
    for d in sorted({Path(os.path.abspath(f)) for f in folders}):
        base = _existing_ancestor(d)
        if not base.is_dir():
            raise UsageError(f"{d}: cannot create this folder, {base} is a file")
        try:
            fd, probe = tempfile.mkstemp(prefix=".exemplar-color-write-test.", dir=base)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            where = d if base == d else f"{d} (in {base})"
            raise OutputError(f"{where}: cannot write here ({e.strerror or e}); choose another output") from None


def check_output_file(path: str | os.PathLike, option: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """A single output file: not a folder, not an input, in a writable place."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; give a file name")
    for i in inputs:
        if _key(i) == _key(p):
            raise UsageError(f"{option} {p} would overwrite the input {i}; give another file name")
    check_writable([p.parent])
    return p


def check_output_folder(path: str | os.PathLike, option: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """An output folder: not an existing file, not an input folder nor inside one, writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p}: is an existing file; give a folder")
    for i in inputs:
        if Path(i).is_dir() and (_key(i) == _key(p) or _inside(p, Path(i))):
            raise UsageError(f"{option} {p} is inside the input folder {i}; choose a folder outside it")
    check_writable([p])
    return p


def write_outputs(job, result) -> None:
    """Side outputs first, the main image last: each atomically, so the image marks the job done."""
    images = {"confidence": result.confidence_image, "labels": result.label_image,
              "warped": lambda: result.warped_image}
    for side in job.sides:
        tag = side.stem.rsplit("_", 1)[1]
        save_image(side, images[tag]())
    save_image(job.output, result.image)


def remove_leftovers(jobs: Iterable[Job]) -> list[Path]:
    """Delete the temporary files a killed run left beside these jobs' outputs; returns them."""
    gone = []
    for j in jobs:
        for o in j.outputs:
            for f in temp_leftovers(o):
                f.unlink(missing_ok=True)
                gone.append(f)
    return gone
