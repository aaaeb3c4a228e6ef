"""``colorize SRC -o OUT --engine ray``: the folder run's jobs, streamed through a pool of Ray workers.

The driver does what the local run does before any work (plan, refusals, job record, ``--resume`` skipping;
:func:`exemplar_color.cli.colorize.execute`), then feeds the jobs to ``Dataset.map_batches`` over an actor pool
(:class:`.worker.ColorizeWorker`): Ray Data's streaming executor keeps only a few batches in flight (bounded
memory, backpressure), and the driver reads back one small status row per photo, never a picture. A worker
killed mid-batch is restarted by Ray and its batch retried; what the dead worker had finished is not redone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import ExemplarColorError
from .cluster import plan_workers, ray_session
from .worker import ColorizeWorker, job_rows

__all__ = ["SETTINGS", "colorize_on_ray"]

# A batch is retried on a fresh worker this many times when its worker dies (a kill, the OOM killer), then the run
# stops: a photo that kills every worker must not loop for ever.
RETRIES = 3

# What a worker needs of the command's arguments, beside its Colorizer's settings, to colour the same way.
SETTINGS = ("reference", "auto", "index", "top_k", "threads", "max_pixels", "overwrite")


def colorize_on_ray(args: argparse.Namespace, colorizer: dict[str, Any], todo: list, report: dict[str, Any], say,
                    before: Callable[[], None] | None = None) -> dict[str, Any]:
    """Colorize the jobs ``todo`` on Ray, filling ``report`` as the local run does (``colorizer``: the keyword
    arguments of each worker's :class:`~exemplar_color.Colorizer`; ``say``: one stderr line; ``before``:
    called once connected, before the first photo, e.g. to write the job record)."""
    from tqdm import tqdm

    if not todo:
        return report
    settings = {"args": {k: getattr(args, k, None) for k in SETTINGS}, "colorizer": colorizer,
                "started_ns": time.time_ns()}
    with ray_session(args.address) as ray:
        workers, cpus = plan_workers(ray, args.workers, args.threads, args.gpus_per_worker)
        workers = min(workers, len(todo))
        if before is not None:
            before()
        batch = max(1, min(8, len(todo) // (workers * 4) or 1))  # several batches per worker: an even spread
        ds = ray.data.from_items(job_rows(todo), override_num_blocks=max(1, -(-len(todo) // batch)))
        ds = ds.map_batches(ColorizeWorker, fn_constructor_kwargs={"settings": settings}, batch_size=batch,
                            batch_format="numpy", concurrency=workers, num_cpus=cpus, max_task_retries=RETRIES,
                            max_restarts=-1, **({"num_gpus": args.gpus_per_worker} if args.gpus_per_worker else {}))
        shown: set[str] = set()
        quiet = args.json or args.quiet
        bar = tqdm(total=len(todo), desc=f"colorize ({workers} Ray workers)", unit="photo", file=sys.stderr,
                   disable=len(todo) < 2 or quiet)
        report["engine"] = {"name": "ray", "workers": workers, "cpus_per_worker": cpus,
                            "gpus_per_worker": args.gpus_per_worker, "batch_size": batch}
        try:
            for row in ds.iter_rows():
                bar.update(1)
                _record(row, report, shown, say, quiet or not args.auto)
        except ExemplarColorError:
            raise
        except Exception as e:  # noqa: BLE001 - Ray's own: a batch whose workers died RETRIES + 1 times
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
            raise ExemplarColorError(f"stopped: a batch failed on {RETRIES + 1} Ray workers in a row (killed, or out "
                                     f"of memory: lower --size or give workers more memory): {first}; the "
                                     f"{len(report['outputs'])} photos finished are kept: run again with --resume"
                                     ) from None
        finally:
            bar.close()
    return report


def _record(row: dict[str, Any], report: dict[str, Any], shown: set[str], say, quiet: bool) -> None:
    """One status row into the report (as the local loop writes it); a broken reference stops the run."""
    target, output = str(row["target"]), str(row["output"])
    for w in json.loads(row["warnings"] or "[]"):
        if w not in shown:
            shown.add(w)
            say(f"warning: {w}")
    if row["stop"]:
        raise ExemplarColorError(f"stopped: {row['error']}")
    if not row["ok"]:
        say(f"error: {row['error']}")
        report["failed"].append({"target": target, "error": str(row["error"])})
        return
    done = json.loads(row["result"]) if row["result"] else {}
    if done and not quiet:
        say(f"{target}: reference {' + '.join(done['references'])}" + "".join(
            f"; passed over {p['path']} ({p['reason']})" for p in done["passed_over"]))
    report["outputs"].append({"target": target, "output": output, **done})
