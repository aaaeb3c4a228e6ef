"""The shipped model's recipe (``recipes/default_model.py``) run end to end on CPU with a tiny budget: every
stage (gallery, index, pairs, cache, train, calibrate, export) on real training photos and the full VGG-19,
the exported model loaded by ``Colorizer`` as the shipped one is, and the same command again resuming with
nothing redone. The budget is what a GPU run changes (``--device cuda``, more photos and steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import SHARED

pytestmark = pytest.mark.slow  # a subprocess running the whole recipe (about a minute on one core)

ROOT = Path(__file__).resolve().parents[2]


def recipe(work: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "recipes" / "default_model.py"), "--work", str(work), "--limit", "30",
           "--max-steps", "6", "--val-every", "3", "--threads", "1", "--device", "cpu", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "EXEMPLAR_COLOR_SHARED": str(SHARED)})


def test_recipe_runs_end_to_end_and_resumes(full_weights, data_dir, tmp_path):
    from exemplar_color import Colorizer

    done = recipe(tmp_path / "work")
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "work" / "export" / "run-hypercolumn"
    model, record = out / "default.safetensors", json.loads((out / "default.json").read_text())
    assert all(t.dtype == torch.float16 for t in load_file(model).values() if t.is_floating_point())
    assert record["config"]["arch"] == "exemplar-hypercolumn" and record["config"]["variant"] == "caffe"
    assert "calibrate: temperature" in done.stderr  # the readout was chosen on held-out pairs
    photo = Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB").resize((192, 128))
    gray, ref = photo.convert("L"), Image.open(data_dir / "kodak" / "kodim22.png").convert("RGB")
    c = Colorizer(model=model, vgg_weights=full_weights, device="cpu", size=128)
    for result in (c.colorize(gray, ref), c.colorize(gray)):  # with a reference, and from the photo alone
        image = np.asarray(result.image)
        assert image.shape == (128, 192, 3) and np.isfinite(result.ab).all()
    # the same command again: every stage finds its output and nothing is redone
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("*") if p.is_file()}
    again = recipe(tmp_path / "work")
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(tmp_path)) for p in before if after.get(p) != before[p])
    assert not changed and set(after) == set(before), changed


def test_a_pack_is_a_work_folder_of_its_own(full_weights, data_dir, tmp_path):
    """What a lent GPU gets: the pairs and their photos as the cache reads them, small, and the rest of the
    recipe run from them alone (another data root, the weights passed explicitly)."""
    from exemplar_color import Colorizer

    work = tmp_path / "work"
    made = recipe(work, "--stages", "gallery,index,pairs,pack")
    assert made.returncode == 0, made.stderr[-2000:]
    pack = work / "pack"
    photos = sorted((pack / "photos").rglob("*.webp"))
    assert len(photos) >= 30 and all(Image.open(p).size == (128, 128) for p in photos)
    assert sum(p.stat().st_size for p in photos) < 30 * 12_000  # about 4 KB a photo at quality 80
    splits = lambda path: [r.split(",")[-1] for r in path.read_text().splitlines()]  # noqa: E731
    assert splits(pack / "pairs.csv") == splits(work / "pairs.csv")
    run = recipe(pack, "--data", str(pack / "photos"), "--vgg-weights", str(full_weights),
                 "--stages", "cache,train,calibrate,export")
    assert run.returncode == 0, run.stderr[-2000:]
    c = Colorizer(model=pack / "export" / "run-hypercolumn" / "default.safetensors", vgg_weights=full_weights,
                  device="cpu", size=128)
    result = c.colorize(Image.open(data_dir / "kodak" / "kodim23.png").convert("L").resize((192, 128)))
    assert np.isfinite(result.ab).all() and np.asarray(result.image).std() > 0
