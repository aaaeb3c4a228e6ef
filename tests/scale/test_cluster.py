"""Reaching a cluster: an unreachable --address is one line and exit 1, before any model (no Ray started)."""

from __future__ import annotations

import socket

import pytest
from scale_fixtures import *

from exemplar_color.cli.main import main


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_address_is_one_line_exit_1(photos, tmp_path, common, capsys):
    pytest.importorskip("ray")
    d, ref = photos
    rc = main(["colorize", str(d), "-r", str(ref), "-o", str(tmp_path / "out"), *common, "--engine", "ray",
               "--address", f"127.0.0.1:{_closed_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("error: --address 127.0.0.1:") and "no Ray cluster answers there" in err[0]
    assert "Traceback" not in err[0] and not (tmp_path / "out").exists()  # nothing written, not even the record


def test_ray_flags_without_the_ray_engine_are_refused(photos, tmp_path, common, capsys):
    d, ref = photos
    rc = main(["colorize", str(d), "-r", str(ref), "-o", str(tmp_path / "out"), *common, "--workers", "2"])
    assert rc == 2 and "--workers is for --engine ray" in capsys.readouterr().err


def test_workers_the_cluster_could_never_place_are_refused_not_waited_for(ray_local):
    """On a real local Ray of 2 CPUs: asking each worker for more GPUs or CPUs than the cluster has is one
    clear error instead of a run that waits for ever."""
    from exemplar_color.scale.cluster import RayUnavailableError, plan_workers

    gpus = ray_local.cluster_resources().get("GPU", 0)  # 0 here; a GPU machine's own otherwise
    assert plan_workers(ray_local, None, 1, 0.0) == (2, 1.0)
    assert plan_workers(ray_local, 1, 2, 0.0) == (1, 2.0)
    with pytest.raises(RayUnavailableError, match=f"--gpus-per-worker {gpus + 0.5:g}: the cluster has {gpus:g} GPUs"):
        plan_workers(ray_local, 2, 1, gpus + 0.5)
    with pytest.raises(RayUnavailableError, match="--threads 4: .* the cluster has 2"):
        plan_workers(ray_local, None, 4, 0.0)
