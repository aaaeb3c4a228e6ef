"""The Ray Data actor of a folder run: one :class:`~exemplar_color.Colorizer` per worker process (model and
VGG-19 loaded once), photos in, small status rows out. Pictures never travel back to the driver: each worker
writes its outputs itself, atomically, side outputs first and the image last (as the local run does), so a
worker killed at any moment leaves a photo either done or not started, never half-written."""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STATUS_COLUMNS", "ColorizeWorker", "job_rows"]

STATUS_COLUMNS = ("target", "output", "ok", "error", "stop", "again", "result", "warnings")


def job_rows(jobs) -> list[dict[str, str]]:
    """The input rows: each job's paths, its side outputs joined by newlines (a plain string column)."""
    return [{"target": str(j.target), "output": str(j.output), "sides": "\n".join(map(str, j.sides))} for j in jobs]


class ColorizeWorker:
    """Colorizes a batch of job rows; constructed once per Ray worker with the run's settings."""

    def __init__(self, settings: dict[str, Any]):
        from ..pipeline.colorizer import Colorizer
        from ..runtime import set_threads

        self.args = argparse.Namespace(**settings["args"])
        self.started_ns = int(settings["started_ns"])
        set_threads(self.args.threads or 1)
        self.colorizer = Colorizer(**settings["colorizer"], index=self.args.index if self.args.auto else None)

    def _written_in_this_run(self, job) -> bool:
        """A retried batch (its worker was killed) skips what the dead worker had finished: every output is
        written once. Without --overwrite any output present was refused or resumed before the run started."""
        if not job.done():
            return False
        return not self.args.overwrite or all(os.stat(o).st_mtime_ns >= self.started_ns for o in job.outputs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from ..outputs import Job
        from ..uris import is_uri

        rows: dict[str, list] = {c: [] for c in STATUS_COLUMNS}
        for target, output, sides in zip(batch["target"], batch["output"], batch["sides"]):
            job = Job(str(target) if is_uri(target) else Path(target), Path(output),
                      tuple(Path(s) for s in str(sides).split("\n") if s))
            status = self._one(job)
            for c in STATUS_COLUMNS:
                rows[c].append(status.get(c, ""))
        return rows

    def _one(self, job) -> dict[str, Any]:
        from ..outputs import remove_leftovers, write_outputs
        from ..errors import ExemplarColorError, ImageError
        from ..io import pixel_limit

        base = {"target": str(job.target), "output": str(job.output), "ok": False, "stop": False, "again": False,
                "result": "", "warnings": "[]"}
        if self._written_in_this_run(job):
            return {**base, "ok": True, "again": True}
        remove_leftovers([job])  # a killed worker's temporary files: its batch is being retried here
        args, refs = self.args, None
        if not args.auto and args.reference:
            refs = args.reference if len(args.reference) > 1 else args.reference[0]
        try:
            with warnings.catch_warnings(record=True) as caught, pixel_limit(args.max_pixels):
                warnings.simplefilter("always")
                result = self.colorizer.colorize(job.target, refs, top_k=args.top_k)
                write_outputs(job, result)
        except ImageError as e:
            return {**base, "error": str(e), "stop": e.path in args.reference}
        except (ExemplarColorError, OSError) as e:
            return {**base, "error": str(e)}
        except MemoryError:
            return {**base, "error": f"{job.target}: the worker ran out of memory on this photo (lower --size or "
                                     f"--max-pixels, or give workers more memory)"}
        except Exception as e:  # noqa: BLE001 - one strange photo of a million must not stop the others
            return {**base, "error": f"{job.target}: unexpected {type(e).__name__}: {e} (please report it)"}
        out = {"reference": result.reference, "references": list(result.references or (result.reference,)),
               "passed_over": [{"path": p, "reason": why} for p, why in result.passed_over],
               "timings": {k: round(v, 4) for k, v in result.timings.items()}}
        return {**base, "ok": True, "result": json.dumps(out),
                "warnings": json.dumps(sorted({str(w.message) for w in caught}))}
