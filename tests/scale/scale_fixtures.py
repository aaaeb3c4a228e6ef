"""Fixtures of the Ray engine's tests (imported by each test module: a conftest.py here would shadow tests/conftest.py,
which other tests import as ``conftest``): one real local Ray of 2 CPUs per pytest process (each xdist worker
its own instance, its own ports and session folder), small real photos, the small VGG-19 slice."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

__all__ = ["common", "make_gray", "photos", "ray_local"]

LEVELS = ["relu2_1", "relu1_1"]


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray (never a mock), started once for the session and stopped after it."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2 ** 20)
    yield ray
    ray.shutdown()


@pytest.fixture
def common(tv_weights) -> list[str]:
    return ["--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--model", "analogy",
            "--levels", *LEVELS, "--size", "64", "--device", "cpu"]


def gray_photos(data_dir: Path, folder: Path, n: int, size: tuple[int, int] = (96, 64)) -> Path:
    """``n`` small gray scans made from the Kodak photos (``sub/`` holds every third: a folder layout)."""
    src = sorted((data_dir / "kodak").glob("*.png"))
    for i in range(n):
        dest = folder / ("sub" if i % 3 == 2 else "") / f"p{i:02d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.open(src[i % len(src)]).convert("L").resize(size).save(dest)
    return folder


@pytest.fixture
def make_gray():
    """:func:`gray_photos`, for the tests that need more photos."""
    return gray_photos


@pytest.fixture
def photos(tmp_path, data_dir) -> tuple[Path, Path]:
    """in/ with 6 gray scans (two in in/sub/) and a colour reference."""
    ref = tmp_path / "ref.jpg"
    Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB").resize((96, 64)).save(ref)
    return gray_photos(data_dir, tmp_path / "in", 6), ref
