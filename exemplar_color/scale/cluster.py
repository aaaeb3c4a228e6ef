"""Where the Ray work runs: the cluster at ``--address``, the Ray this process is already connected to (tests,
notebooks), or a local Ray started for one run and stopped after it."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator

from ..errors import ExemplarColorError, UsageError

__all__ = ["RayUnavailableError", "plan_workers", "quiet_ray_data", "ray_session"]


class RayUnavailableError(ExemplarColorError):
    """Ray is not installed, or the cluster cannot be reached (exit 1, one line)."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'exemplar_color[scale]'") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A plain TCP connect first: Ray's own failure is a minute of retries and a traceback."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected HOST:PORT (the head's `ray start --head` address) or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise RayUnavailableError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start "
                                  f"one with `ray start --head`, or leave --address out for a local Ray") from None


@contextlib.contextmanager
def ray_session(address: str | None, cpus: int | None = None) -> Iterator[object]:
    """The ``ray`` module, connected. A local Ray (no address) gets ``cpus`` CPUs (default: this machine's) and
    is shut down on exit; a cluster or an existing connection is left as it was. Whatever Ray prints meanwhile
    (a worker's death, say) goes to stderr: stdout is the command's result only."""
    with contextlib.redirect_stdout(sys.stderr), _connected(address, cpus) as ray:
        yield ray


@contextlib.contextmanager
def _connected(address: str | None, cpus: int | None) -> Iterator[object]:
    ray = _import_ray()
    if address and address != "auto":
        _reachable(address)
    if ray.is_initialized():
        quiet_ray_data()
        yield ray
        return
    kw = {"address": address} if address else {
        "num_cpus": cpus or os.cpu_count() or 1, "include_dashboard": False,
        "object_store_memory": 256 * 2 ** 20}  # results are status rows, not pictures: a small store is plenty
    try:
        ray.init(log_to_driver=False, configure_logging=False, **kw)
    except (ConnectionError, RuntimeError) as e:
        raise RayUnavailableError(f"Ray could not start or connect{f' to {address}' if address else ''}: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    quiet_ray_data()
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_ray_data() -> None:
    """Ray Data's own progress bars and per-second operator logs off: the command's one bar is the progress,
    and stderr stays readable (warnings and errors of Ray still show)."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def plan_workers(ray, workers: int | None, threads: int | None, gpus: float) -> tuple[int, float]:
    """(workers, CPUs per worker): ``workers`` or what the cluster holds (GPUs / ``gpus`` per worker when
    ``gpus`` > 0, else CPUs / ``threads``). A worker the cluster could never place (more GPUs or CPUs than it
    has) is refused here: Ray would wait for it for ever."""
    per = float(threads or 1)
    have = ray.cluster_resources()
    if gpus > have.get("GPU", 0):
        raise RayUnavailableError(f"--gpus-per-worker {gpus:g}: the cluster has {have.get('GPU', 0):g} GPUs")
    if per > have.get("CPU", 0):
        raise RayUnavailableError(f"--threads {per:g}: each worker reserves that many CPUs and the cluster has "
                                  f"{have.get('CPU', 0):g}")
    if workers:
        return workers, per
    if gpus > 0:
        return max(1, int(have["GPU"] // gpus)), per
    return max(1, int(have.get("CPU", 1) // per)), per
