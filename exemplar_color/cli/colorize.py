"""``exemplar-color colorize TARGET... --reference REF [REF ...] -o OUT``: colour black-and-white photos.

Several references (``--reference A B C``, or ``--auto --top-k N``): each pixel takes its colours from the
reference that matches it best; ``--save-confidence`` then also writes the label map (``_labels.png``, a
palette PNG whose pixel values are the reference's position, 0 for the first).

Before any model is loaded, every output is planned (:mod:`.plan`): collisions, outputs that would replace
an input, an ``-o`` of the wrong kind and unwritable places are refused in one line. A bad reference stops
the run at once; one bad target is reported and skipped, the others go on (exit code 1 when any failed).
Each output is written atomically, side outputs (``_confidence``, ``_warped``) first and the image last, so
a target is done exactly when all its outputs exist: ``--resume`` skips those, and removes the temporary
files (``.NAME.XXXX.exemplar-tmp.png``) a killed run left. A folder run keeps its job record
(``OUT/.exemplar-color-job.json``: references and settings), so ``--resume`` continues only the same job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ..errors import ExemplarColorError, ImageError, UsageError
from .options import (add_json_option, add_model_option, add_out_option, add_pipeline_options, add_resume_option,
                      add_top_k_option, colorizer_from, colorizer_settings, existing_file, index_folder)

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("colorize", help="colorize black-and-white photos with a reference (or automatically)",
                       description="Colorize each TARGET (files or folders) with the colours of REFERENCE, or, "
                                   "with --auto, of the best colour reference found in a gallery index.",
                       epilog="""-o is a file (one target) or a folder (keeps each target folder's layout, as NAME.png).
Inputs that would map to one output, or outputs that would replace an input, or that already exist (without
--overwrite), are refused before any work (exit 2); an unwritable -o exits 1.

Examples:
  exemplar-color colorize old.jpg --reference colour.jpg -o old_colour.png
  exemplar-color colorize scans/ --reference colour.jpg -o out/ --resume --json
  exemplar-color colorize scans/ --auto --top-k 3 --index gallery.index -o out/
  exemplar-color colorize photos.csv -o out/ --engine ray --address head:6379 --resume
""")
    p.add_argument("targets", nargs="+", metavar="TARGET",
                   help="photo(s) to colorize: files, folders, or manifests (.csv/.parquet listing photo paths or "
                        "URIs such as s3://bucket/scan.tif)")
    p.add_argument("--reference", "-r", metavar="REF", type=existing_file, nargs="+", action="extend", default=[],
                   help="colour reference photo(s); with several, each pixel takes the best-matching one")
    p.add_argument("--auto", action="store_true", help="pick each target's reference from --index")
    add_top_k_option(p, 1, "with --auto: use the K best usable references of the gallery together (default 1)")
    p.add_argument("--index", metavar="PATH", type=index_folder,
                   help="gallery index for --auto (see `exemplar-color index build`)")
    add_out_option(p, "output file (one target) or folder")
    add_model_option(p)
    add_pipeline_options(p)
    p.add_argument("--save-confidence", action="store_true",
                   help="also write <name>_confidence.png (and, with several references, <name>_labels.png)")
    p.add_argument("--save-warped", action="store_true", help="also write <name>_warped.png (raw warped colours)")
    add_resume_option(p, "skip targets whose outputs all exist; remove a killed run's temporary files; a folder run "
                         "continues only the same job (references and settings, recorded in "
                         "OUT/.exemplar-color-job.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (without it, an existing output file is refused "
                        "before any work, exit 2)")
    add_json_option(p, "print a machine-readable summary on stdout")
    from ..scale.options import add_engine_options

    add_engine_options(p, workers=True)
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> list:
    """Every target's :class:`~.plan.Job` (its outputs), checked (see :mod:`.plan`); raises
    UsageError/OutputError."""
    from ..outputs import check_writable, plan_colorize

    several = len(args.reference) > 1 or (args.auto and args.top_k > 1)
    tags = [t for t, on in (("confidence", args.save_confidence), ("labels", args.save_confidence and several),
                            ("warped", args.save_warped)) if on]
    jobs = plan_colorize(args.targets, args.out, tags, inputs=args.reference)
    if not jobs:
        raise UsageError(f"no images found in {' '.join(args.targets)}")
    check_writable({o.parent for j in jobs for o in j.outputs})
    return jobs


def _check_reference(path: str, shown: set[str]) -> None:
    """Read the reference once before the model: a bad one stops everything here, in one line."""
    from ..photos import check_reference, read_photo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = read_photo(path)
    _show(caught, shown)
    check_reference(ref)


def _show(caught: list, shown: set[str]) -> None:
    for w in caught:
        msg = str(w.message)
        if msg not in shown:  # once per run, not once per target (a reference's warning)
            shown.add(msg)
            say(f"warning: {msg}")


def say(line: str) -> None:
    """One line on stderr, above the progress bar (never inside it)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _job(args: argparse.Namespace) -> dict:
    """What makes a folder run's pictures (references and settings), for its :class:`JobRecord`."""
    from ..artifacts import file_sha256, sha256_of

    def named(path: str | None, digest=file_sha256) -> list[str] | None:
        return None if path is None else [str(Path(path).resolve()), digest(path)[:16]]

    return {"references": [named(r, sha256_of) for r in args.reference],
            "auto": {"index": str(Path(args.index).resolve()), "top_k": args.top_k} if args.auto else None,
            "model": args.model if args.model in ("default", "analogy", "none", "None") else named(args.model),
            "chroma_gain": args.chroma_gain, "size": args.size, "levels": args.levels,
            "vgg_weights": named(args.vgg_weights), "vgg_variant": args.vgg_variant, "method": args.method,
            "precision": args.precision, "position_prior": args.position_prior,
            **({"vivid": True} if args.vivid else {})}  # absent when off: records of older runs still match


def colours_alone(model: str | None) -> bool:
    """Whether ``--model`` colours a photo with no reference (checked from its header, before any work)."""
    from ..models import colours_alone as alone

    return alone(model)


def run(args: argparse.Namespace) -> int:
    return finish(args, execute(args))


def execute(args: argparse.Namespace) -> dict:
    """The run (local, or on Ray with ``--engine ray``): its report, as ``--json`` prints it."""
    from tqdm import tqdm

    from ..outputs import JobRecord, check_working_size, refuse_existing, remove_leftovers, write_outputs

    if not args.auto and not args.reference and not colours_alone(args.model):
        raise UsageError(f"the {args.model} model needs a reference: give --reference REF, or --auto with --index "
                         f"PATH, or use a model that colours alone (the default one)")
    if args.auto and args.reference:
        raise UsageError("give --reference REF or --auto, not both")
    if args.auto and not args.index:
        raise UsageError("--auto needs --index PATH (build one with `exemplar-color index build`)")
    if args.top_k > 1 and not args.auto:
        raise UsageError("--top-k is for --auto; give several references with --reference A B C")
    if args.resume and args.overwrite:
        raise UsageError("give --resume (keep the finished outputs) or --overwrite (replace them), not both")
    from ..scale.options import refuse_engine_flags
    from ..scale.sources import expand

    refuse_engine_flags(args, workers=True)
    args.targets = expand(args.targets)  # manifests (.csv/.parquet) become their photos, planned as files
    jobs = plan(args)
    check_working_size(args.size, [j.target for j in jobs])
    existing = [o for j in jobs for o in j.outputs if os.path.lexists(o)]
    folder = not (len(jobs) == 1 and jobs[0].output == Path(args.out))
    record = JobRecord(args.out, _job(args)) if folder else None
    if args.resume and record is not None:
        record.check(existing)  # only the same job continues: never a folder made two ways
    elif not (args.overwrite or args.resume):  # --resume skips the finished targets and redoes only the others
        refuse_existing(existing)
    shown: set[str] = set()
    for ref in args.reference:
        _check_reference(ref, shown)
    if args.auto:
        from ..retrieval.gallery import read_manifest

        read_manifest(Path(args.index))  # missing or interrupted index: one line, before the model
    remove_leftovers(jobs)
    todo = [j for j in jobs if not (args.resume and j.done())]
    report = {"outputs": [], "failed": [], "skipped": [str(j.output) for j in jobs if j not in todo]}
    if getattr(args, "engine", "local") == "ray":
        from ..scale.colorize import colorize_on_ray

        fresh = record is not None and not (args.resume and record.path.is_file())
        start = time.perf_counter()
        report = colorize_on_ray(args, colorizer_settings(args), todo, report, say,
                                 before=record.write if fresh else None)
        return report | {"seconds": round(time.perf_counter() - start, 3)}
    colorizer = colorizer_from(args, index=args.index if args.auto else None) if todo else None
    if colorizer is not None:
        report |= {"head": colorizer.head_name, "device": str(colorizer.device)}
        if record is not None and not (args.resume and record.path.is_file()):
            record.write()  # before the first output: whatever this run leaves is known to be this job's
    start = time.perf_counter()
    bar = tqdm(todo, desc="colorize", unit="img", disable=len(todo) < 2 or args.json or args.quiet, file=sys.stderr)
    for job in bar:
        result = None  # the previous target's picture and pixels go before the next target is read
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                refs = None if args.auto or not args.reference else (
                    args.reference if len(args.reference) > 1 else args.reference[0])  # none: the photo alone
                result = colorizer.colorize(job.target, refs, top_k=args.top_k)
            _show(caught, shown)
            if args.auto and not (args.json or args.quiet):
                say(f"{job.target}: reference {' + '.join(result.references or (result.reference,))}" + "".join(
                    f"; passed over {p} ({why})" for p, why in result.passed_over))
            write_outputs(job, result)
            report["outputs"].append({"target": str(job.target), "output": str(job.output),
                                      "reference": result.reference,
                                      "references": list(result.references or (result.reference,)),
                                      "passed_over": [{"path": p, "reason": why} for p, why in result.passed_over],
                                      "timings": {k: round(v, 4) for k, v in result.timings.items()}})
        except ImageError as e:
            if e.path in args.reference:  # the reference broke: every target would fail
                bar.close()
                raise ExemplarColorError(f"stopped: {e}") from None
            say(f"error: {e}")
            report["failed"].append({"target": str(job.target), "error": str(e)})
        except (ExemplarColorError, OSError) as e:
            say(f"error: {e}")
            report["failed"].append({"target": str(job.target), "error": str(e)})
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def finish(args: argparse.Namespace, report: dict) -> int:
    """The result on stdout (text, or ``--json``); exit code 1 when any photo failed."""
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        where = f"-> {args.out}" if report["outputs"] or report["skipped"] else "; nothing written"
        print(f"colorized {len(report['outputs'])}, skipped {len(report['skipped'])}, "
              f"failed {len(report['failed'])} {where}")  # the result: stdout, as every command's
    return 1 if report["failed"] else 0
