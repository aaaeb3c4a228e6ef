"""Shared fixtures: real data and real pretrained VGG-19 slices from ../shared (skipped when absent)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"
TV_WEIGHTS = SHARED / "weights" / "vgg19-torchvision-features-0-10.pth"
CAFFE_WEIGHTS = SHARED / "weights" / "vgg19-caffe-features-0-16.pth"
FULL_WEIGHTS = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"  # relu1_1..relu5_4, Caffe convention
# The levels the pretrained slices cover (the full VGG-19 file cannot be downloaded on these machines).
SLICE_LEVELS = ("relu3_1", "relu2_1", "relu1_1")

torch.set_num_threads(1)  # pytest -n 2 runs two workers on the 2 CI cores


def small_gallery(photos: Iterable[Path], folder: Path, index: Path, weights: Path):
    """``folder`` holding copies of ``photos`` and its gallery index at ``index`` (relu3_1 at 112 px with the
    torchvision slice): the small gallery of the automatic-mode tests. Returns the open ``GalleryIndex``."""
    from exemplar_color.retrieval import DescriptorConfig, GalleryIndex

    folder.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    return GalleryIndex.build(folder, index, config=DescriptorConfig(level="relu3_1", size=112, variant="torchvision"),
                              weights=weights, progress=False)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared folder is absent)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def tv_weights() -> Path:
    return _need(TV_WEIGHTS)


@pytest.fixture(scope="session")
def caffe_weights() -> Path:
    return _need(CAFFE_WEIGHTS)


@pytest.fixture(scope="session")
def full_weights() -> Path:
    return _need(FULL_WEIGHTS)


@pytest.fixture(scope="session")
def vgg_slices(tv_weights):
    """Real pretrained VGG-19 (torchvision convention) for relu3_1, relu2_1, relu1_1; built once."""
    from exemplar_color.backbone import VGG19Features

    return VGG19Features(SLICE_LEVELS, weights=tv_weights)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never touch the network: any attempt to open a URL fails loudly."""
    import urllib.request

    def refuse(*a, **k):
        raise RuntimeError("tests must not access the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
