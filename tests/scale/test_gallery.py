"""``index build --engine ray`` against a real local Ray: shards written by the workers, merged at the end; the
folder opens with GalleryIndex.open like a local build and a query returns the same neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scale_fixtures import *

from exemplar_color.cli.main import main

pytestmark = pytest.mark.slow  # a Ray cluster and its workers


def test_ray_build_gives_the_local_builds_neighbours(ray_local, data_dir, tv_weights, tmp_path, capsys):
    from exemplar_color.retrieval import GalleryIndex

    gallery = tmp_path / "g"
    for i, f in enumerate(sorted((data_dir / "kodak").glob("*.png"))[:9]):
        (gallery / ("b" if i % 2 else "a")).mkdir(parents=True, exist_ok=True)
        Image.open(f).convert("RGB").resize((96, 64)).save(gallery / ("b" if i % 2 else "a") / f"g{i}.jpg")
    Image.open(data_dir / "kodak" / "kodim01.png").convert("L").resize((96, 64)).save(gallery / "gray.jpg")
    common = ["--level", "relu3_1", "--size", "64", "--vgg-variant", "torchvision", "--vgg-weights", str(tv_weights),
              "--shard-size", "2", "--device", "cpu", "--json"]
    assert main(["index", "build", str(gallery), "--index", str(tmp_path / "local"), "--workers", "0", *common]) == 0
    capsys.readouterr()
    assert main(["index", "build", str(gallery), "--index", str(tmp_path / "ray"), "--engine", "ray", "--workers",
                 "2", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 9 and report["grayscale"] == 1 and report["parts_built"] == 5
    assert not (tmp_path / "ray" / ".build").exists()  # the chunks were merged, then removed
    local, ray = GalleryIndex.open(tmp_path / "local"), GalleryIndex.open(tmp_path / "ray")
    assert ray.store.paths == local.store.paths
    np.testing.assert_allclose(ray.store.global_descriptors(), local.store.global_descriptors(), atol=1e-5)
    query = gallery / "a" / "g0.jpg"
    near = [(r.path, round(r.score, 4)) for r in local.search(query, k=5)]
    assert [(r.path, round(r.score, 4)) for r in ray.search(query, k=5)] == near
    # an existing index is refused without --resume/--overwrite, before any work (as a local build)
    assert main(["index", "build", str(gallery), "--index", str(tmp_path / "ray"), "--engine", "ray", *common]) == 1
    assert "already exists" in capsys.readouterr().err
