"""Faults, for real: SIGKILL of one Ray worker mid-run (the run finishes, every output written once, none
half-written), and SIGKILL of the driver, then the same command (it resumes; nothing finished is redone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_fixtures import *

pytestmark = pytest.mark.slow  # subprocesses, each with its own local Ray, and SIGKILL

N = 16
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (read from /proc), children first."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        here = todo.pop()
        kids = [c for c, p in parent.items() if p == here]
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def outputs(out: Path) -> dict[str, int]:
    """Finished outputs (a killed run's hidden temporary files, ``.NAME.png.*.png``, are not outputs)."""
    return {p.name: p.stat().st_mtime_ns for p in out.rglob("*.png") if not p.name.startswith(".")}


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "exemplar_color.cli.main", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(out: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while len(outputs(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "no progress"
        time.sleep(0.2)


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob(".*") if "tmp" in p.name]


@pytest.fixture
def job(tmp_path, data_dir, tv_weights, make_gray) -> tuple[list[str], Path]:
    from PIL import Image

    src = make_gray(data_dir, tmp_path / "in", N)
    ref = tmp_path / "ref.jpg"
    Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB").resize((96, 64)).save(ref)
    out = tmp_path / "out"
    return ["colorize", str(src), "-r", str(ref), "-o", str(out), "--vgg-weights", str(tv_weights), "--vgg-variant",
            "torchvision", "--model", "analogy", "--levels", "relu2_1", "relu1_1", "--size", "64", "--device", "cpu",
            "--engine", "ray", "--workers", "2", "--resume", "--json"], out


def test_killing_a_worker_mid_run_loses_and_repeats_nothing(job):
    args, out = job
    proc = start(args)
    try:
        wait_for(out, 2, proc)
        workers = [p for p in descendants(proc.pid) if "ColorizeWorker" in cmdline(p)]
        assert workers, [cmdline(p)[:80] for p in descendants(proc.pid)]
        before = outputs(out)
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    report = json.loads(stdout)
    assert len(report["outputs"]) == N and not report["failed"]
    after = outputs(out)
    assert len(after) == N and no_temp_files(out)
    assert {k: after[k] for k in before} == before, "an output finished before the kill was written again"


def test_killing_the_driver_then_the_same_command_resumes(job):
    args, out = job
    proc = start(args)
    try:
        wait_for(out, 3, proc)
        ours = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    for pid in ours:  # the local Ray this run started: make sure none of it writes on (ours, by pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(1)
    finished = outputs(out)
    assert 3 <= len(finished) < N
    done = subprocess.run([sys.executable, "-m", "exemplar_color.cli.main", *args], env=ENV, text=True, check=False,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert {Path(p).name for p in report["skipped"]} == set(finished)
    assert len(report["outputs"]) == N - len(finished) and not report["failed"]
    after = outputs(out)
    assert len(after) == N and no_temp_files(out)
    assert {k: after[k] for k in finished} == finished, "a finished output was computed again"
